package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const chartDir = "helm/moat"

// helmBinary finds helm on PATH or where `go install` puts it.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "helm"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("MOAT_TEST_REQUIRE_HELM") != "" {
		t.Fatal("helm is not installed and MOAT_TEST_REQUIRE_HELM is set (go install helm.sh/helm/v3/cmd/helm@v3.16.4)")
	}
	t.Skip("helm is not installed: the chart is not rendered. Install it with `go install helm.sh/helm/v3/cmd/helm@v3.16.4` (.ci/run does when the chart changed or it is cached in $HOME/go/bin)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func helm(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// TestHelmChart lints the chart and renders it with the default values and
// with ci/forward-auth-values.yaml, then checks the rendering with the
// checks deploy/kubernetes passes.
func TestHelmChart(t *testing.T) {
	bin := helmBinary(t)
	for _, c := range []struct {
		name, values    string
		replicas, minAv int
		forwardAuth     bool
	}{
		{"default values", "", 3, 2, false},
		{"forward-auth values", "ci/forward-auth-values.yaml", 2, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{}
			if c.values != "" {
				args = append(args, "-f", filepath.Join(chartDir, c.values))
			}
			helm(t, bin, append([]string{"lint", "--strict", chartDir}, args...)...)
			raw := helm(t, bin, append([]string{"template", "moat", chartDir, "--kube-version", "1.30.0", "--namespace", "moat"}, args...)...)
			m := manifestsFrom(t, "helm template ("+c.name+")", raw)
			m.externalSecret = true

			checkDeployment(t, m, "moat", c.replicas)
			services := map[string]int{"moat": 4001, "moat-admin": 9090}
			if c.forwardAuth {
				services["moat-forward-auth"] = 4003
			}
			checkServices(t, m, "moat", services, c.minAv)
			cfg := checkConfigMap(t, m, "moat-config")

			dep := m.one(t, "Deployment", "moat")
			sum := str(dep, "spec", "template", "metadata", "annotations", "checksum/config")
			if len(sum) != 64 {
				t.Errorf("checksum/config annotation %q: a config change would not roll the pods", sum)
			}
			c0, ports := moatContainer(t, dep)
			if str(c0, "envFrom", 0, "secretRef", "name") != "moat-secrets" {
				t.Errorf("secrets not from the existing Secret: %v", dig(c0, "envFrom"))
			}
			if len(m.byKind["Secret"]) != 0 {
				t.Error("the chart renders a Secret: secrets never come from values")
			}
			if len(m.byKind["NetworkPolicy"]) != 1 {
				t.Errorf("%d NetworkPolicies, want 1", len(m.byKind["NetworkPolicy"]))
			}
			// Forward-auth: on only when asked, on its own port and
			// Service, reachable only from the gateways.
			if c.forwardAuth != (cfg.ForwardAuth.Listen != "") {
				t.Errorf("forward_auth.listen %q with forwardAuth.enabled %v", cfg.ForwardAuth.Listen, c.forwardAuth)
			}
			if c.forwardAuth {
				if p := listenPort(t, cfg.ForwardAuth.Listen); p != ports["forward-auth"] || p == ports["http"] {
					t.Errorf("forward_auth.listen %q, container port forward-auth %d", cfg.ForwardAuth.Listen, ports["forward-auth"])
				}
				np := m.one(t, "NetworkPolicy", "moat")
				found := false
				for _, rule := range list(np, "spec", "ingress") {
					if n, _ := num(rule, "ports", 0, "port"); n == ports["forward-auth"] {
						found = len(list(rule, "from")) > 0
					}
				}
				if !found {
					t.Error("the NetworkPolicy admits the forward-auth port from anywhere")
				}
				if len(m.byKind["ServiceMonitor"]) != 1 || str(m.byKind["ServiceMonitor"][0], "spec", "endpoints", 0, "port") != "admin" {
					t.Error("no ServiceMonitor on the admin port")
				}
			} else if _, ok := ports["forward-auth"]; ok || len(m.byKind["ServiceMonitor"]) != 0 {
				t.Error("forward-auth port or ServiceMonitor without being asked for")
			}
		})
	}
	// Changing the config changes the checksum.
	a := helm(t, bin, "template", "moat", chartDir, "--kube-version", "1.30.0")
	b := helm(t, bin, "template", "moat", chartDir, "--kube-version", "1.30.0", "--set", "config.log.level=debug")
	sums := func(raw []byte) string {
		return str(manifestsFrom(t, "x", raw).byKind["Deployment"][0], "spec", "template", "metadata", "annotations", "checksum/config")
	}
	if sums(a) == sums(b) {
		t.Error("checksum/config does not follow the configuration")
	}
	// A store URL with a password comes from the Secret (MOAT_SESSION_STORE):
	// with store.url empty the ConfigMap names no store.
	if out := helm(t, bin, "template", "moat", chartDir, "--kube-version", "1.30.0", "--set", "store.url="); strings.Contains(string(out), "store: redis") {
		t.Error("store.url empty still writes a store into the ConfigMap")
	}
	// Refusals name the value to fix.
	for _, bad := range [][]string{
		{"--set", "existingSecret="},
		{"--set", "config.listen=0.0.0.0:1"},
	} {
		cmd := exec.Command(bin, append([]string{"template", "moat", chartDir, "--kube-version", "1.30.0"}, bad...)...)
		out, err := cmd.CombinedOutput()
		key := strings.SplitN(bad[1], "=", 2)[0]
		if err == nil || !strings.Contains(string(out), key) {
			t.Errorf("helm template %v: err %v, output does not name %s:\n%s", bad, err, key, out)
		}
	}
}

// TestIngressNginxExampleMatchesTheDocs: the chart's example carries the
// forward-auth annotations docs/gateways.md gives.
func TestIngressNginxExampleMatchesTheDocs(t *testing.T) {
	path := filepath.Join(chartDir, "examples", "ingress-nginx.yaml")
	docs := decodeAll(t, path, readFile(t, path))
	ann, _ := dig(docs[0], "metadata", "annotations").(obj)
	guide := string(readFile(t, "../docs/gateways.md"))
	for _, k := range []string{"nginx.ingress.kubernetes.io/auth-url", "nginx.ingress.kubernetes.io/auth-response-headers"} {
		v, _ := ann[k].(string)
		if v == "" || !strings.Contains(guide, k+`: "`+v+`"`) {
			t.Errorf("%s: %s = %q differs from docs/gateways.md", path, k, v)
		}
	}
	var paths []string
	for _, d := range docs {
		paths = append(paths, str(d, "spec", "rules", 0, "http", "paths", 0, "path"))
	}
	if !slices.Equal(paths, []string{"/api/", "/auth/"}) {
		t.Errorf("%s paths %v, want /api/ (with forward-auth) and /auth/ (to moat)", path, paths)
	}
	if _, ok := dig(docs[1], "metadata", "annotations").(obj); ok {
		t.Error("the /auth/ Ingress must not carry the forward-auth annotations")
	}
}
