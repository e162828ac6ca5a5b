{{- define "moat.fullname" -}}
{{- if contains "moat" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-moat" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "moat.selectorLabels" -}}
app.kubernetes.io/name: moat
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bff
{{- end -}}

{{- define "moat.labels" -}}
{{ include "moat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "moat.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* moat.yaml: the listeners are the chart's, session.store is store.url (or MOAT_SESSION_STORE in existingSecret when store.url is empty), the rest is .Values.config. */}}
{{- define "moat.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- range $k := list "listen" "admin" "forward_auth" -}}
{{- if hasKey $cfg $k -}}
{{- fail (printf "config.%s: the chart sets it; use ports.* and forwardAuth.* instead" $k) -}}
{{- end -}}
{{- end -}}
{{- $session := deepCopy (default dict $cfg.session) -}}
{{- if hasKey $session "store" -}}
{{- fail "config.session.store: set store.url instead" -}}
{{- end -}}
{{- if .Values.store.url -}}
{{- $_ := set $session "store" .Values.store.url -}}
{{- end -}}
{{- $_ := set $cfg "session" $session -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%v" .Values.ports.http) -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%v" .Values.ports.admin)) -}}
{{- if .Values.forwardAuth.enabled -}}
{{- $fa := dict "listen" (printf "0.0.0.0:%v" .Values.forwardAuth.port) "trusted_proxies" (required "forwardAuth.trustedProxies: the gateways' pod CIDR" .Values.forwardAuth.trustedProxies) -}}
{{- if .Values.forwardAuth.identityHeaders -}}
{{- $_ := set $fa "identity_headers" .Values.forwardAuth.identityHeaders -}}
{{- end -}}
{{- $_ := set $cfg "forward_auth" $fa -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
