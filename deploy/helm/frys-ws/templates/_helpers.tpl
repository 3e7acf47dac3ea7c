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
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
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
{{- range $i := until (int .Values.nats.replicas) }}
{{- $urls = append $urls (printf "nats://%s-%d.%s.%s.svc.%s:4222" $sts $i $svc $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url }}
{{- end }}
{{- end }}

{{- define "frys-ws.ingress.scheme" -}}
{{- if .Values.ingress.scheme }}
{{- .Values.ingress.scheme }}
{{- else if .Values.ingress.tls.enabled }}
{{- "wss" }}
{{- else }}
{{- "ws" }}
{{- end }}
{{- end }}

{{/* FRYS_PUBLIC_URL; $(POD_NAME) and $(POD_NAMESPACE) are expanded by the kubelet. */}}
{{- define "frys-ws.gateway.publicUrl" -}}
{{- if .Values.gateway.publicUrl }}
{{- .Values.gateway.publicUrl }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s://%s/gw/$(POD_NAME)/ws" (include "frys-ws.ingress.scheme" .) .Values.ingress.host }}
{{- else }}
{{- printf "ws://$(POD_NAME).%s.$(POD_NAMESPACE).svc.%s:%d/ws" (include "frys-ws.gateway.headless" .) .Values.clusterDomain (int .Values.gateway.port) }}
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
{{- if and .Values.auth.existingSecret (or .Values.auth.jwtSecret .Values.auth.jwtPublicKey .Values.auth.jwks .Values.auth.apiKey .Values.auth.resumeSecret) }}
{{- fail "auth.existingSecret is set: put the credentials in that Secret, not in auth.jwtSecret/jwtPublicKey/jwks/apiKey/resumeSecret" }}
{{- end }}
{{- end }}
