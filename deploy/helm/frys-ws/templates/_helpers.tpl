{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "frys-ws.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name, "RELEASE-frys-ws" (or the release name alone when it already contains the chart
name). Kept to 40 characters so that "<fullname>-gateway-<ordinal>" stays a valid pod name,
label value and Service name.
*/}}
{{- define "frys-ws.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "frys-ws.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "frys-ws.gateway.fullname" -}}{{ include "frys-ws.fullname" . }}-gateway{{- end }}
{{- define "frys-ws.gateway.headless" -}}{{ include "frys-ws.fullname" . }}-gateway-pods{{- end }}
{{- define "frys-ws.router.fullname" -}}{{ include "frys-ws.fullname" . }}-router{{- end }}
{{- define "frys-ws.nats.fullname" -}}{{ include "frys-ws.fullname" . }}-nats{{- end }}
{{- define "frys-ws.nats.headless" -}}{{ include "frys-ws.fullname" . }}-nats-headless{{- end }}
{{- define "frys-ws.nats.tlsSecret" -}}
{{- default (printf "%s-tls" (include "frys-ws.nats.fullname" .)) .Values.nats.tls.secretName }}
{{- end }}
{{- define "frys-ws.nats.authSecret" -}}
{{- default (printf "%s-auth" (include "frys-ws.nats.fullname" .)) .Values.nats.auth.existingSecret }}
{{- end }}
{{- define "frys-ws.secretName" -}}
{{- default (printf "%s-auth" (include "frys-ws.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "frys-ws.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "frys-ws.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "frys-ws.router.serviceAccountName" -}}
{{- if .Values.router.serviceAccount.create }}
{{- default (include "frys-ws.router.fullname" .) .Values.router.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.router.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "frys-ws.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Labels (Kubernetes recommended labels) ----------------------------------------------- */}}

{{- define "frys-ws.labels" -}}
helm.sh/chart: {{ include "frys-ws.chart" . }}
app.kubernetes.io/name: {{ include "frys-ws.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: frys
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "gateway"). */}}
{{- define "frys-ws.selectorLabels" -}}
app.kubernetes.io/name: {{ include "frys-ws.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "frys-ws.componentLabels" -}}
{{ include "frys-ws.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Label selector string of the gateway pods, for the router (FRYS_ROUTER_K8S_SELECTOR). */}}
{{- define "frys-ws.gateway.selectorString" -}}
{{- $labels := include "frys-ws.selectorLabels" (dict "ctx" . "component" "gateway") | fromYaml }}
{{- $pairs := list }}
{{- range $k := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $k (get $labels $k)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Gateway sizing ------------------------------------------------------------------------ */}}

{{/* Number of gateway pods that can exist: HPA max, or the fixed replica count. */}}
{{- define "frys-ws.gateway.maxPods" -}}
{{- if .Values.gateway.autoscaling.enabled }}
{{- .Values.gateway.autoscaling.maxReplicas }}
{{- else }}
{{- .Values.gateway.replicas }}
{{- end }}
{{- end }}

{{/* preStop sleep + drain (rounded up) + margin: the pod is never killed mid-drain. */}}
{{- define "frys-ws.gateway.terminationGracePeriodSeconds" -}}
{{- $drain := .Values.gateway.drainSeconds | float64 | ceil | int }}
{{- add .Values.gateway.preStop.sleepSeconds $drain .Values.gateway.terminationGraceMarginSeconds }}
{{- end }}

{{- define "frys-ws.gateway.streamReplicas" -}}
{{- if not (kindIs "invalid" .Values.gateway.streamReplicas) }}
{{- .Values.gateway.streamReplicas }}
{{- else if and .Values.nats.enabled (ge (int .Values.nats.replicas) 3) }}
{{- 3 }}
{{- else }}
{{- 1 }}
{{- end }}
{{- end }}

{{/* URLs ---------------------------------------------------------------------------------- */}}

{{/* NATS client URLs: every server of the bundled cluster, or nats.url. */}}
{{- define "frys-ws.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- $urls := list }}
{{- $sts := include "frys-ws.nats.fullname" . }}
{{- $svc := include "frys-ws.nats.headless" . }}
{{- $scheme := ternary "tls" "nats" .Values.nats.tls.enabled }}
{{- range $i := until (int .Values.nats.replicas) }}
{{- $urls = append $urls (printf "%s://%s-%d.%s.%s.svc.%s:4222" $scheme $sts $i $svc $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url }}
{{- end }}
{{- end }}

{{- define "frys-ws.ingress.scheme" -}}
{{- if .Values.ingress.scheme }}
{{- .Values.ingress.scheme }}
{{- else if or .Values.ingress.tls.enabled (eq .Values.ingress.tlsMode "passthrough") }}
{{- "wss" }}
{{- else }}
{{- "ws" }}
{{- end }}
{{- end }}

{{/* FRYS_PUBLIC_URL; $(POD_NAME) and $(POD_NAMESPACE) are expanded by the kubelet. */}}
{{- define "frys-ws.gateway.publicUrl" -}}
{{- if .Values.gateway.publicUrl }}
{{- .Values.gateway.publicUrl }}
{{- else if and .Values.ingress.enabled (eq .Values.ingress.tlsMode "passthrough") }}
{{- printf "wss://$(POD_NAME).%s/ws" .Values.ingress.host }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s://%s/gw/$(POD_NAME)/ws" (include "frys-ws.ingress.scheme" .) .Values.ingress.host }}
{{- else }}
{{- printf "%s://$(POD_NAME).%s.$(POD_NAMESPACE).svc.%s:%d/ws" (include "frys-ws.gateway.wsScheme" .) (include "frys-ws.gateway.headless" .) .Values.clusterDomain (int .Values.gateway.port) }}
{{- end }}
{{- end }}

{{- define "frys-ws.gateway.wsScheme" -}}{{ ternary "wss" "ws" .Values.gateway.tls.enabled }}{{- end }}
{{- define "frys-ws.gateway.httpScheme" -}}{{ ternary "HTTPS" "HTTP" .Values.gateway.tls.enabled }}{{- end }}

{{/* NATS security ------------------------------------------------------------------------ */}}

{{/*
What a Frys process may do on NATS under subjectPrefix: frys.runtime.nats_auth.frys_permissions
in the NATS configuration syntax (tests/deploy checks that both list the same subjects).
*/}}
{{- define "frys-ws.nats.permissions" -}}
{{- $p := .Values.subjectPrefix }}
{{- $under := replace "." "_" $p }}
{{- $buckets := list }}
{{- range $b := list "control" "presence" "placement" "dicts" "optimiser" }}
{{- $buckets = append $buckets (printf "%s_%s" $under $b) }}
{{- end }}
{{- $streams := list (printf "%s_EVENTS" (upper $under)) (printf "%s_STATE" (upper $under)) }}
{{- range $b := $buckets }}{{ $streams = append $streams (printf "KV_%s" $b) }}{{ end }}
{{- $pub := list (printf "%s.>" $p) "_INBOX.>" "$JS.API.INFO" }}
{{- $sub := list (printf "%s.>" $p) "_INBOX.>" }}
{{- range $s := $streams }}
{{- range $api := list "STREAM.INFO" "STREAM.CREATE" "STREAM.UPDATE" "STREAM.MSG.GET" "DIRECT.GET" }}
{{- $pub = append $pub (printf "$JS.API.%s.%s" $api $s) }}
{{- end }}
{{- $pub = append $pub (printf "$JS.API.DIRECT.GET.%s.>" $s) }}
{{- $pub = append $pub (printf "$JS.API.CONSUMER.CREATE.%s" $s) }}
{{- $pub = append $pub (printf "$JS.API.CONSUMER.CREATE.%s.>" $s) }}
{{- range $api := list "CONSUMER.DURABLE.CREATE" "CONSUMER.INFO" "CONSUMER.DELETE" "CONSUMER.MSG.NEXT" }}
{{- $pub = append $pub (printf "$JS.API.%s.%s.*" $api $s) }}
{{- end }}
{{- $pub = append $pub (printf "$JS.ACK.%s.>" $s) }}
{{- $pub = append $pub (printf "$JS.FC.%s.>" $s) }}
{{- $sub = append $sub (printf "$JS.EVENT.ADVISORY.STREAM.*.%s" $s) }}
{{- end }}
{{- range $api := list "CREATE" "INFO" "DELETE" }}
{{- $pub = append $pub (printf "$JS.API.STREAM.%s.%s_REPLICAS_PROBE" $api (upper $under)) }}
{{- end }}
{{- range $b := $buckets }}
{{- $pub = append $pub (printf "$KV.%s.>" $b) }}
{{- $sub = append $sub (printf "$KV.%s.>" $b) }}
{{- end }}
{
  publish: { allow: [{{ range $i, $s := $pub }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}] }
  subscribe: { allow: [{{ range $i, $s := $sub }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}] }
}
{{- end }}

{{/*
How one component connects to NATS: (dict "ctx" $ "user" "gateway").
Env entries, then (under "volumes:"/"mounts:" in frys-ws.nats.clientVolumes) the files.
*/}}
{{- define "frys-ws.nats.clientEnv" -}}
{{- $n := .ctx.Values.nats }}
{{- if $n.enabled }}
{{- if $n.tls.enabled }}
- name: FRYS_NATS_TLS_CA_FILE
  value: /etc/frys/nats-tls/ca.crt
{{- end }}
{{- if $n.auth.enabled }}
- name: FRYS_NATS_USER
  value: {{ .user | quote }}
- name: FRYS_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "frys-ws.nats.authSecret" .ctx }}
      key: {{ printf "%s-password" .user }}
{{- end }}
{{- else }}
{{- if $n.external.caSecret }}
- name: FRYS_NATS_TLS_CA_FILE
  value: /etc/frys/nats-tls/ca.crt
{{- end }}
{{- if $n.external.credsSecret }}
- name: FRYS_NATS_CREDS_FILE
  value: {{ printf "/etc/frys/nats-creds/%s.creds" .user | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "frys-ws.nats.clientMounts" -}}
{{- $n := .ctx.Values.nats }}
{{- if or (and $n.enabled $n.tls.enabled) (and (not $n.enabled) $n.external.caSecret) }}
- name: nats-tls
  mountPath: /etc/frys/nats-tls
  readOnly: true
{{- end }}
{{- if and (not $n.enabled) $n.external.credsSecret }}
- name: nats-creds
  mountPath: /etc/frys/nats-creds
  readOnly: true
{{- end }}
{{- end }}

{{- define "frys-ws.nats.clientVolumes" -}}
{{- $n := .ctx.Values.nats }}
{{- if or (and $n.enabled $n.tls.enabled) (and (not $n.enabled) $n.external.caSecret) }}
- name: nats-tls
  secret:
    secretName: {{ ternary (include "frys-ws.nats.tlsSecret" .ctx) $n.external.caSecret $n.enabled }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if and (not $n.enabled) $n.external.credsSecret }}
- name: nats-creds
  secret:
    secretName: {{ $n.external.credsSecret }}
    defaultMode: 0440
    items:
      - key: {{ printf "%s.creds" .user }}
        path: {{ printf "%s.creds" .user }}
{{- end }}
{{- end }}

{{/* OpenTelemetry env vars for one component: (dict "ctx" $ "component" "gateway"). */}}
{{- define "frys-ws.otelEnv" -}}
{{- $v := .ctx.Values.otel }}
{{- if $v.endpoint }}
{{- $defaultName := printf "%s-%s" (include "frys-ws.fullname" .ctx) .component }}
{{- $name := ternary $v.gatewayServiceName $v.routerServiceName (eq .component "gateway") }}
{{- $attrs := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" "service.instance.id=$(POD_NAME)" (printf "service.version=%s" (default .ctx.Chart.AppVersion .ctx.Values.image.tag)) }}
{{- range $k := keys $v.resourceAttributes | sortAlpha }}
{{- $attrs = append $attrs (printf "%s=%s" $k (get $v.resourceAttributes $k)) }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ default $defaultName $name | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.protocol | quote }}
- name: OTEL_METRICS_EXPORTER
  value: {{ ternary "otlp" "none" $v.exportMetrics | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $v.sampler | quote }}
{{- if $v.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.samplerArg | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}

{{/* Pod placement ------------------------------------------------------------------------- */}}

{{/* Default anti-affinity: (dict "ctx" $ "component" "gateway" "mode" "soft"). */}}
{{- define "frys-ws.antiAffinity" -}}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "frys-ws.selectorLabels" . | nindent 10 }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "frys-ws.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* Checks that JSON Schema cannot express ---------------------------------------------------- */}}
{{- define "frys-ws.validate" -}}
{{- $g := .Values.gateway }}
{{- if ge (divf $g.reconnectSpreadMs 1000.0) (float64 $g.drainSeconds) }}
{{- fail (printf "gateway.reconnectSpreadMs (%v) must be below gateway.drainSeconds (%v s): clients must have left before the drain ends" $g.reconnectSpreadMs $g.drainSeconds) }}
{{- end }}
{{- if and $g.autoscaling.enabled (gt (int $g.autoscaling.minReplicas) (int $g.autoscaling.maxReplicas)) }}
{{- fail "gateway.autoscaling.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- if and .Values.nats.enabled (gt (int (include "frys-ws.gateway.streamReplicas" .)) (int .Values.nats.replicas)) }}
{{- fail (printf "gateway.streamReplicas (%s) exceeds nats.replicas (%v)" (include "frys-ws.gateway.streamReplicas" .) .Values.nats.replicas) }}
{{- end }}
{{- if and .Values.nats.enabled (le (int .Values.nats.terminationGracePeriodSeconds) (add (int .Values.nats.lameDuckSeconds) 10)) }}
{{- fail "nats.terminationGracePeriodSeconds must exceed nats.lameDuckSeconds + 10 (the lame-duck grace period)" }}
{{- end }}
{{- $mode := .Values.ingress.tlsMode }}
{{- if and .Values.ingress.enabled (ne $mode "edge") (not $g.tls.enabled) }}
{{- fail (printf "ingress.tlsMode %s needs gateway.tls.enabled: the Ingress sends TLS to the pods" $mode) }}
{{- end }}
{{- if and .Values.ingress.enabled (eq $mode "edge") $g.tls.enabled }}
{{- fail "gateway.tls.enabled with an Ingress needs ingress.tlsMode reencrypt or passthrough: with edge the Ingress would speak plain HTTP to a TLS port" }}
{{- end }}
{{- if and .Values.ingress.enabled (eq $mode "passthrough") .Values.ingress.tls.enabled }}
{{- fail "ingress.tlsMode passthrough: TLS ends at the gateways, so ingress.tls must stay disabled (the gateway certificate is gateway.tls.secretName)" }}
{{- end }}
{{- if and .Values.auth.existingSecret (or .Values.auth.jwtSecret .Values.auth.jwtPublicKey .Values.auth.jwks .Values.auth.apiKey .Values.auth.resumeSecret) }}
{{- fail "auth.existingSecret is set: put the credentials in that Secret, not in auth.jwtSecret/jwtPublicKey/jwks/apiKey/resumeSecret" }}
{{- end }}
{{- end }}
