// Package deploy holds moat's deployment artefacts (Kubernetes manifests, a
// systemd unit, Prometheus rules) and this test, which checks them without a
// cluster, a container engine or systemd: every YAML file parses, the
// Kubernetes objects are complete and agree with each other, the example
// configurations are valid moat configurations, and the Dockerfile, the unit
// and the alert rules keep the properties the operations guide relies on.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/session"
	"go.yaml.in/yaml/v3"
)

const (
	k8sDir        = "kubernetes"
	unitFile      = "systemd/moat.service"
	unitConfig    = "systemd/moat.yaml.example"
	unitEnv       = "systemd/moat.env.example"
	rulesFile     = "prometheus/moat-rules.yaml"
	dockerfile    = "../Dockerfile"
	dockerignore  = "../.dockerignore"
	operationsDoc = "../docs/operations.md"
	metricsSource = "../internal/metrics/metrics.go"

	// The image's CMD and the Deployment's args name this file.
	configPath = "/etc/moat/moat.yaml"
)

// obj is one decoded YAML document.
type obj = map[string]any

// decodeAll decodes every document of a (multi-document) YAML stream.
func decodeAll(t *testing.T, path string, raw []byte) []obj {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []obj
	for i := 0; ; i++ {
		var doc obj
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if doc != nil { // an empty document between two "---"
			docs = append(docs, doc)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dig walks nested maps and lists: keys are strings, list indexes ints.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := dig(v, path...).(string)
	return s
}

func num(v any, path ...any) (int, bool) {
	n, ok := dig(v, path...).(int)
	return n, ok
}

func list(v any, path ...any) []any {
	l, _ := dig(v, path...).([]any)
	return l
}

// TestEveryYAMLFileParses parses every YAML file under deploy/, examples
// included, as a YAML stream.
func TestEveryYAMLFileParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "templates" && filepath.Base(filepath.Dir(filepath.Dir(path))) == "helm" {
			return filepath.SkipDir // Go templates; TestHelmChart renders and checks them
		}
		if err != nil || d.IsDir() {
			return err
		}
		name := strings.TrimSuffix(d.Name(), ".example")
		if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
			if docs := decodeAll(t, path, readFile(t, path)); len(docs) == 0 {
				t.Errorf("%s: no YAML document", path)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("found only %d YAML files under deploy/", n)
	}
}

// manifests are the Kubernetes objects of deploy/kubernetes, by file.
type manifests struct {
	where string // the directory or rendering they come from
	// externalSecret: the Secret is created outside (the Helm chart's
	// existingSecret), so it is not among the objects.
	externalSecret bool
	files          map[string][]obj // file name → its objects
	byKind         map[string][]obj // kind → objects
	kustom         obj
	resList        []string
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{where: k8sDir, files: map[string][]obj{}, byKind: map[string][]obj{}}
	entries, err := os.ReadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		path := filepath.Join(k8sDir, e.Name())
		docs := decodeAll(t, path, readFile(t, path))
		if e.Name() == "kustomization.yaml" {
			if len(docs) != 1 || str(docs[0], "kind") != "Kustomization" {
				t.Fatalf("%s: want one Kustomization", path)
			}
			m.kustom = docs[0]
			for _, r := range list(docs[0], "resources") {
				s, _ := r.(string)
				m.resList = append(m.resList, s)
			}
			continue
		}
		m.files[e.Name()] = docs
		for _, d := range docs {
			m.byKind[str(d, "kind")] = append(m.byKind[str(d, "kind")], d)
		}
	}
	if m.kustom == nil {
		t.Fatalf("%s/kustomization.yaml is missing", k8sDir)
	}
	return m
}

func (m *manifests) one(t *testing.T, kind, name string) obj {
	t.Helper()
	for _, o := range m.byKind[kind] {
		if str(o, "metadata", "name") == name {
			return o
		}
	}
	t.Fatalf("no %s %q in %s", kind, name, m.where)
	return nil
}

// manifestsFrom decodes a rendered stream (helm template) as one file.
func manifestsFrom(t *testing.T, where string, raw []byte) *manifests {
	t.Helper()
	m := &manifests{where: where, files: map[string][]obj{}, byKind: map[string][]obj{}}
	docs := decodeAll(t, where, raw)
	m.files[where] = docs
	for _, d := range docs {
		m.byKind[str(d, "kind")] = append(m.byKind[str(d, "kind")], d)
	}
	return m
}

func TestKubernetesObjectsAreComplete(t *testing.T) {
	m := loadManifests(t)
	seen := map[string]string{}
	for file, docs := range m.files {
		for i, d := range docs {
			where := fmt.Sprintf("%s/%s document %d", k8sDir, file, i)
			api, kind, name := str(d, "apiVersion"), str(d, "kind"), str(d, "metadata", "name")
			if api == "" || kind == "" || name == "" {
				t.Errorf("%s: apiVersion %q, kind %q, metadata.name %q: all three are required", where, api, kind, name)
				continue
			}
			if str(d, "metadata", "namespace") != "" {
				t.Errorf("%s: has metadata.namespace; kustomization.yaml sets the namespace", where)
			}
			id := api + "/" + kind + "/" + name
			if prev, dup := seen[id]; dup {
				t.Errorf("%s: %s is also defined in %s", where, id, prev)
			}
			seen[id] = where
		}
	}
	// The kustomization lists exactly the manifest files.
	var files []string
	for f := range m.files {
		files = append(files, f)
	}
	slices.Sort(files)
	res := slices.Clone(m.resList)
	slices.Sort(res)
	if !slices.Equal(files, res) {
		t.Errorf("kustomization.yaml resources %v, want every manifest file: %v", res, files)
	}
	for _, want := range []string{"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
		if len(m.byKind[want]) == 0 {
			t.Errorf("no %s in %s/", want, k8sDir)
		}
	}
}

// moatContainer returns the Deployment's moat container and its named ports.
func moatContainer(t *testing.T, dep obj) (obj, map[string]int) {
	t.Helper()
	for _, c := range list(dep, "spec", "template", "spec", "containers") {
		if str(c, "name") == "moat" {
			ports := map[string]int{}
			for _, p := range list(c, "ports") {
				n, _ := num(p, "containerPort")
				ports[str(p, "name")] = n
			}
			return c.(obj), ports
		}
	}
	t.Fatal("the moat Deployment has no container named moat")
	return nil, nil
}

// portOf resolves a probe's or Service's port (a number or a port name).
func portOf(v any, ports map[string]int) int {
	switch p := v.(type) {
	case int:
		return p
	case string:
		return ports[p]
	}
	return 0
}

func TestDeployment(t *testing.T) {
	checkDeployment(t, loadManifests(t), "moat", 3)
}

// checkDeployment checks the moat Deployment of m (deploy/kubernetes or
// the Helm chart's rendering): probes, hardened pod, config and secrets
// wiring, shutdown timing, listeners.
func checkDeployment(t *testing.T, m *manifests, name string, replicas int) {
	t.Helper()
	dep := m.one(t, "Deployment", name)
	if n, _ := num(dep, "spec", "replicas"); n != replicas {
		t.Errorf("spec.replicas = %d, want %d", n, replicas)
	}
	c, ports := moatContainer(t, dep)
	if ports["http"] != 4001 || ports["admin"] != 9090 {
		t.Errorf("container ports %v, want http 4001 and admin 9090", ports)
	}

	probes := map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
	for probe, path := range probes {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if got := portOf(dig(c, probe, "httpGet", "port"), ports); got != 4001 {
			t.Errorf("%s port %d, want 4001 (the main listener)", probe, got)
		}
	}

	sc := dig(c, "securityContext")
	for _, want := range []struct {
		path []any
		val  any
	}{
		{[]any{"runAsNonRoot"}, true},
		{[]any{"readOnlyRootFilesystem"}, true},
		{[]any{"allowPrivilegeEscalation"}, false},
		{[]any{"capabilities", "drop", 0}, "ALL"},
		{[]any{"seccompProfile", "type"}, "RuntimeDefault"},
	} {
		if got := dig(sc, want.path...); got != want.val {
			t.Errorf("container securityContext %v = %v, want %v", want.path, got, want.val)
		}
	}
	if uid, ok := num(sc, "runAsUser"); ok && uid == 0 {
		t.Error("container securityContext.runAsUser is 0")
	}

	// Secrets come from the Secret, the config from the ConfigMap, mounted
	// read-only where the image's CMD and the args expect it.
	secretName := str(c, "envFrom", 0, "secretRef", "name")
	if m.externalSecret {
		if secretName == "" {
			t.Error("no envFrom secretRef: moat gets no secrets")
		}
	} else {
		m.one(t, "Secret", secretName)
	}
	args := list(c, "args")
	if len(args) != 3 || args[0] != "serve" || args[1] != "--config" || args[2] != configPath {
		t.Errorf("args %v, want [serve --config %s]", args, configPath)
	}
	var cmName string
	for _, v := range list(dep, "spec", "template", "spec", "volumes") {
		if name := str(v, "configMap", "name"); name != "" {
			cmName = name
			for _, mnt := range list(c, "volumeMounts") {
				if str(mnt, "name") == str(v, "name") {
					if dig(mnt, "readOnly") != true {
						t.Errorf("config volume mount %q is not readOnly", str(mnt, "mountPath"))
					}
					if got := filepath.Dir(configPath); str(mnt, "mountPath") != got {
						t.Errorf("config mounted at %q, want %q", str(mnt, "mountPath"), got)
					}
				}
			}
		}
	}
	cm := m.one(t, "ConfigMap", cmName)
	if str(cm, "data", filepath.Base(configPath)) == "" {
		t.Errorf("ConfigMap %s has no %s", cmName, filepath.Base(configPath))
	}

	// Shutdown: the grace period covers the preStop sleep and moat's drain.
	cfg := loadConfig(t, "configmap moat.yaml", []byte(str(cm, "data", "moat.yaml")))
	grace, _ := num(dep, "spec", "template", "spec", "terminationGracePeriodSeconds")
	sleep, _ := num(c, "lifecycle", "preStop", "sleep", "seconds")
	if need := sleep + int(cfg.Server.ShutdownGrace.D()/time.Second); grace <= need {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop sleep %ds + server.shutdown_grace %s", grace, sleep, cfg.Server.ShutdownGrace.D())
	}
	// moat listens where the container ports say.
	if p := listenPort(t, cfg.Listen); p != ports["http"] {
		t.Errorf("moat.yaml listen %q, container port http is %d", cfg.Listen, ports["http"])
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" && host != "" {
		t.Errorf("moat.yaml listen %q: in a container moat must listen on all interfaces", cfg.Listen)
	}
	if p := listenPort(t, cfg.Admin.Listen); p != ports["admin"] {
		t.Errorf("moat.yaml admin.listen %q, container port admin is %d", cfg.Admin.Listen, ports["admin"])
	}
	if got := str(dep, "spec", "template", "metadata", "annotations", "prometheus.io/port"); got != strconv.Itoa(ports["admin"]) {
		t.Errorf("prometheus.io/port annotation %q, want the admin port %d", got, ports["admin"])
	}
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%q is not host:port", addr)
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestServicesAndDisruptionBudget(t *testing.T) {
	checkServices(t, loadManifests(t), "moat", map[string]int{"moat": 4001, "moat-admin": 9090}, 2)
}

// checkServices checks that each Service selects the Deployment's pods on
// its port, and the PodDisruptionBudget's selector and minAvailable.
func checkServices(t *testing.T, m *manifests, name string, services map[string]int, minAvailable int) {
	t.Helper()
	dep := m.one(t, "Deployment", name)
	_, ports := moatContainer(t, dep)
	podLabels, _ := dig(dep, "spec", "template", "metadata", "labels").(obj)
	selects := func(sel any) bool {
		s, ok := sel.(obj)
		if !ok || len(s) == 0 {
			return false
		}
		for k, v := range s {
			if podLabels[k] != v {
				return false
			}
		}
		return true
	}
	if !selects(dig(dep, "spec", "selector", "matchLabels")) {
		t.Error("the Deployment's selector does not match its pod template's labels")
	}
	for name, want := range services {
		svc := m.one(t, "Service", name)
		if !selects(dig(svc, "spec", "selector")) {
			t.Errorf("Service %s does not select moat's pods", name)
		}
		p, _ := num(svc, "spec", "ports", 0, "port")
		target := portOf(dig(svc, "spec", "ports", 0, "targetPort"), ports)
		if p != want || target != want {
			t.Errorf("Service %s: port %d → %d, want %d → %d", name, p, target, want, want)
		}
		if typ := str(svc, "spec", "type"); typ != "" && typ != "ClusterIP" {
			t.Errorf("Service %s is %s; keep it ClusterIP and expose moat through an Ingress", name, typ)
		}
	}
	pdb := m.one(t, "PodDisruptionBudget", name)
	if n, _ := num(pdb, "spec", "minAvailable"); n != minAvailable {
		t.Errorf("PodDisruptionBudget minAvailable %v, want %d", dig(pdb, "spec", "minAvailable"), minAvailable)
	}
	if !selects(dig(pdb, "spec", "selector", "matchLabels")) {
		t.Error("the PodDisruptionBudget does not select moat's pods")
	}
}

// secretEnvNames are the environment variables config.Resolve reads,
// recorded from Resolve itself so that a renamed variable fails this test.
func secretEnvNames(t *testing.T) []string {
	t.Helper()
	var names []string
	cfg := &config.Config{}
	if err := cfg.Resolve(func(k string) (string, bool) { names = append(names, k); return "", false }); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("config.Resolve read no environment variable")
	}
	return names
}

// testEnv stands in for the environment moat gets from the Secret or
// moat.env: valid values for every secret.
func testEnv() config.Env {
	env := map[string]string{
		"MOAT_OIDC_CLIENT_SECRET": "test-client-secret",
		"MOAT_SESSION_KEYS":       session.NewKey() + "," + session.NewKey(),
		"MOAT_ADMIN_TOKEN":        session.NewKey(),
	}
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// loadConfig runs an example configuration through config.Load's steps
// with the secrets supplied as the environment would supply them.
func loadConfig(t *testing.T, name string, raw []byte) *config.Config {
	t.Helper()
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := cfg.Resolve(testEnv()); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	cfg.SetDefaults()
	var problems []string
	if err := cfg.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%s is not a valid moat configuration:\n  %s", name, strings.Join(problems, "\n  "))
	}
	if w := cfg.Warnings(); len(w) > 0 {
		t.Errorf("%s: insecure or fragile settings: %v", name, w)
	}
	return cfg
}

func TestConfigMapIsAValidConfig(t *testing.T) {
	checkConfigMap(t, loadManifests(t), "moat-config")
}

// checkConfigMap checks that the ConfigMap's moat.yaml is a valid moat
// configuration for several replicas, and returns it.
func checkConfigMap(t *testing.T, m *manifests, name string) *config.Config {
	t.Helper()
	cm := m.one(t, "ConfigMap", name)
	cfg := loadConfig(t, m.where+" "+name+" moat.yaml", []byte(str(cm, "data", "moat.yaml")))
	if cfg.Session.Store == "memory" || strings.HasPrefix(cfg.Session.Store, "bolt:") {
		t.Errorf("session.store %q cannot be shared by 3 replicas", cfg.Session.Store)
	}
	if cfg.Admin.Listen == "" {
		t.Error("admin.listen is not set: no /metrics for the scrape annotations")
	}
	if len(cfg.Routes) == 0 {
		t.Error("the example has no route")
	}
	return cfg
}

func TestSecretHoldsOnlyPlaceholdersMoatReads(t *testing.T) {
	m := loadManifests(t)
	names := secretEnvNames(t)
	for _, s := range m.byKind["Secret"] {
		data, _ := dig(s, "stringData").(obj)
		if len(data) == 0 {
			t.Errorf("Secret %s has no stringData", str(s, "metadata", "name"))
		}
		for k, v := range data {
			if !slices.Contains(names, k) {
				t.Errorf("Secret key %s is not a variable moat reads (%v)", k, names)
			}
			if s, _ := v.(string); !strings.HasPrefix(s, "REPLACE-ME") {
				t.Errorf("Secret key %s holds %q: keep a REPLACE-ME placeholder, never a real secret", k, s)
			}
		}
	}
}

// unit is a systemd unit file: section → key → values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) || strings.TrimSpace(k) != k || k == "" {
				t.Fatalf("%s:%d: %q is not Key=value inside a [Section]", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, unitFile)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("no [%s] section", s)
		}
	}
	for key, want := range map[string]string{
		"ExecStart":             "/usr/local/bin/moat serve --config " + configPath,
		"Type":                  "simple", // moat does not speak sd_notify
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"StateDirectory":        "moat",
		"CapabilityBoundingSet": "",
		"KillSignal":            "SIGTERM",
		"Restart":               "on-failure",
	} {
		if _, set := u["Service"][key]; !set {
			t.Errorf("[Service] %s is not set", key)
		} else if got := u.last("Service", key); got != want {
			t.Errorf("[Service] %s=%s, want %s", key, got, want)
		}
	}
	if got := u.last("Service", "ExecReload"); !strings.Contains(got, "-HUP") || !strings.Contains(got, "$MAINPID") {
		t.Errorf("ExecReload=%s, want SIGHUP to $MAINPID", got)
	}
	// "~" negates a whole SystemCallFilter= assignment; one in the middle of
	// a list would be taken as a system call name.
	for _, v := range u["Service"]["SystemCallFilter"] {
		if i := strings.Index(v, "~"); i > 0 {
			t.Errorf("SystemCallFilter=%s: put the ~ list on its own SystemCallFilter= line", v)
		}
	}
	// The bolt store lives in the StateDirectory, the only writable path.
	cfg := loadConfig(t, unitConfig, readFile(t, unitConfig))
	if !strings.HasPrefix(cfg.Session.Store, "bolt:///var/lib/"+u.last("Service", "StateDirectory")+"/") {
		t.Errorf("session.store %q is not in StateDirectory=/var/lib/%s", cfg.Session.Store, u.last("Service", "StateDirectory"))
	}
	stop, err := time.ParseDuration(strings.TrimSpace(u.last("Service", "TimeoutStopSec")) + "s")
	if err != nil {
		t.Errorf("TimeoutStopSec=%q: want a number of seconds", u.last("Service", "TimeoutStopSec"))
	} else if stop <= cfg.Server.ShutdownGrace.D() {
		t.Errorf("TimeoutStopSec=%s must exceed server.shutdown_grace %s", stop, cfg.Server.ShutdownGrace.D())
	}
	if !strings.HasSuffix(u.last("Service", "EnvironmentFile"), "/etc/moat/moat.env") {
		t.Errorf("EnvironmentFile=%s, want /etc/moat/moat.env", u.last("Service", "EnvironmentFile"))
	}
}

func TestSystemdEnvExample(t *testing.T) {
	names := secretEnvNames(t)
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, unitEnv)))
	seen := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(k, "export ") {
			t.Errorf("%s:%d: %q is not VAR=value", unitEnv, n, line)
			continue
		}
		if !slices.Contains(names, k) {
			t.Errorf("%s:%d: %s is not a variable moat reads (%v)", unitEnv, n, k, names)
		}
		if !strings.HasPrefix(v, "REPLACE-ME") {
			t.Errorf("%s:%d: %s holds %q: keep a REPLACE-ME placeholder", unitEnv, n, k, v)
		}
		seen++
	}
	if seen == 0 {
		t.Errorf("%s sets no variable", unitEnv)
	}
}

// dockerInstructions returns the Dockerfile's instructions, continuation
// lines joined, comments and parser directives dropped.
func dockerInstructions(t *testing.T) []string {
	t.Helper()
	var out []string
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, dockerfile)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		out = append(out, strings.TrimSpace(cur+line))
		cur = ""
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := dockerInstructions(t)
	var froms []string
	user, lastFrom := "", -1
	for i, in := range ins {
		word, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			froms = append(froms, rest)
			lastFrom, user = i, ""
		case "USER":
			user = strings.TrimSpace(rest)
		case "ADD":
			if strings.Contains(rest, "http://") || strings.Contains(rest, "https://") {
				t.Errorf("%q: fetch nothing with ADD; remote files are unverified", in)
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("FROM lines %v: want a build stage and a runtime stage", froms)
	}
	if !strings.HasPrefix(froms[0], "golang:") || !strings.HasSuffix(strings.ToLower(froms[0]), " as build") {
		t.Errorf("first FROM %q, want golang:… AS build", froms[0])
	}
	if rt := froms[len(froms)-1]; !strings.HasPrefix(rt, "gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("runtime FROM %q, want gcr.io/distroless/static-debian12:nonroot", rt)
	}
	if name, _, _ := strings.Cut(user, ":"); name != "nonroot" && name != "65532" {
		t.Errorf("runtime stage USER %q, want nonroot (65532)", user)
	}
	runtime := strings.Join(ins[lastFrom:], "\n")
	build := strings.Join(ins[:lastFrom], "\n")
	for _, want := range []string{`ENTRYPOINT ["/moat"]`, `CMD ["serve", "--config", "` + configPath + `"]`, "EXPOSE 4001 9090"} {
		if !strings.Contains(runtime, want) {
			t.Errorf("runtime stage lacks %s", want)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "-buildvcs="} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage lacks %s", want)
		}
	}
	// go build stamps vcs.revision from .git: the context must include it.
	for _, line := range strings.Split(string(readFile(t, dockerignore)), "\n") {
		if l := strings.TrimSpace(line); l == ".git" || l == ".git/" || l == "/.git" || l == "**/.git" {
			t.Errorf(".dockerignore excludes .git; moat version would lose its commit")
		}
	}
}

// metricNames are the moat_ metrics internal/metrics registers.
func metricNames(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(metricsSource)
	if err != nil {
		t.Fatalf("reading the metric names: %v (metricsSource must follow internal/metrics)", err)
	}
	// Metrics registered by other files of the package (e.g. pending.go).
	others, _ := filepath.Glob(filepath.Join(filepath.Dir(metricsSource), "*.go"))
	for _, f := range others {
		if f != metricsSource && !strings.HasSuffix(f, "_test.go") {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src = append(src, b...)
		}
	}
	var names []string
	for _, m := range regexp.MustCompile(`Name:\s*"(moat_[a-z0-9_]+)"`).FindAllSubmatch(src, -1) {
		names = append(names, string(m[1]))
	}
	if len(names) == 0 {
		t.Fatalf("%s registers no moat_ metric", metricsSource)
	}
	return names
}

// unknownMetrics lists the moat_ names in text that moat does not export.
func unknownMetrics(text string, names []string) []string {
	var bad []string
	for _, ref := range regexp.MustCompile(`\bmoat_[a-z0-9_]+`).FindAllString(text, -1) {
		base := ref
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(ref, suf); ok && slices.Contains(names, b) {
				base = b
			}
		}
		if !slices.Contains(names, base) && !slices.Contains(bad, ref) {
			bad = append(bad, ref)
		}
	}
	return bad
}

func TestPrometheusRules(t *testing.T) {
	raw := readFile(t, rulesFile)
	docs := decodeAll(t, rulesFile, raw)
	if len(docs) != 1 {
		t.Fatalf("%s: want one document", rulesFile)
	}
	groups := list(docs[0], "groups")
	if len(groups) == 0 {
		t.Fatalf("%s: no groups", rulesFile)
	}
	var alerts []string
	for _, g := range groups {
		for _, r := range list(g, "rules") {
			name := str(r, "alert")
			if name == "" || strings.TrimSpace(str(r, "expr")) == "" {
				t.Errorf("group %s: a rule without alert or expr", str(g, "name"))
			}
			if sev := str(r, "labels", "severity"); sev != "warning" && sev != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", name, sev)
			}
			if str(r, "annotations", "summary") == "" {
				t.Errorf("alert %s: no summary annotation", name)
			}
			alerts = append(alerts, name)
		}
	}
	for _, want := range []string{"MoatTokenRefreshFailing", "MoatStoreErrors", "MoatHigh5xxRate", "MoatLoginFailureRate", "MoatIdPSlow", "MoatReadinessFlapping"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert", want)
		}
	}
	if bad := unknownMetrics(string(raw), metricNames(t)); len(bad) > 0 {
		t.Errorf("%s uses metrics moat does not export: %v", rulesFile, bad)
	}
}

// TestOperationsGuide checks that docs/operations.md shows the same alert
// rules as deploy/prometheus and names only metrics moat exports.
func TestOperationsGuide(t *testing.T) {
	doc := string(readFile(t, operationsDoc))
	var block string
	for _, part := range strings.Split(doc, "```yaml\n")[1:] {
		body, _, _ := strings.Cut(part, "```")
		if strings.HasPrefix(body, "groups:") || strings.Contains(body, "\ngroups:") {
			block = body
			break
		}
	}
	if block == "" {
		t.Fatalf("%s has no ```yaml block with the alert rules (groups:)", operationsDoc)
	}
	want := decodeAll(t, rulesFile, readFile(t, rulesFile))
	got := decodeAll(t, operationsDoc, []byte(block))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the alert rules in %s differ from %s; copy the file into the guide", operationsDoc, rulesFile)
	}
	if bad := unknownMetrics(doc, metricNames(t)); len(bad) > 0 {
		t.Errorf("%s names metrics moat does not export: %v", operationsDoc, bad)
	}
}

// docs/operations.md quotes the unit's systemd-analyze security score; it
// must be what systemd-analyze says (offline, so no running systemd is
// needed).
func TestSystemdSecurityScore(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("MOAT_TEST_REQUIRE_SYSTEMD_ANALYZE") != "" {
			t.Fatal("systemd-analyze is not installed and MOAT_TEST_REQUIRE_SYSTEMD_ANALYZE is set (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not installed (apt-get install systemd; .ci/run does)")
	}
	tmp := filepath.Join(t.TempDir(), "moat.service")
	if err := os.WriteFile(tmp, readFile(t, unitFile), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(bin, "security", "--offline=true", tmp).CombinedOutput() // exits non-zero above its threshold
	m := regexp.MustCompile(`Overall exposure level for moat\.service: ([0-9.]+) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no score in:\n%s", out)
	}
	want := fmt.Sprintf("rates the unit %s (%q)", m[1], m[2])
	if doc := string(readFile(t, operationsDoc)); !strings.Contains(doc, want) {
		t.Errorf("%s does not say %s", operationsDoc, want)
	}
}
