{{/* Sizes and limits the gateway and NATS must agree on --------------------------------- */}}

{{/* Bytes of a NATS size (max_file_store): k = 1000, kb/ki/kib = 1024, and so on up to t. */}}
{{- define "frys-ws.natsBytes" -}}
{{- if kindIs "string" . }}
{{- $s := lower (trim .) }}
{{- $num := regexFind "^[0-9]+" $s }}
{{- $unit := trimPrefix $num $s }}
{{- $units := dict "" 1.0 "b" 1.0 "k" 1e3 "kb" 1024.0 "ki" 1024.0 "kib" 1024.0 "m" 1e6 "mb" 1048576.0 "mi" 1048576.0 "mib" 1048576.0 "g" 1e9 "gb" 1073741824.0 "gi" 1073741824.0 "gib" 1073741824.0 "t" 1e12 "tb" 1099511627776.0 "ti" 1099511627776.0 "tib" 1099511627776.0 }}
{{- if or (not $num) (not (hasKey $units $unit)) }}
{{- fail (printf "cannot read %q as a NATS size" .) }}
{{- end }}
{{- mulf (float64 $num) (get $units $unit) }}
{{- else }}
{{- float64 . }}
{{- end }}
{{- end }}

{{/* Bytes of a Kubernetes quantity (a volume size): k, M, G, T, P are powers of 1000, Ki … Pi
of 1024. */}}
{{- define "frys-ws.kubeBytes" -}}
{{- if kindIs "string" . }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $unit := trimPrefix $num . }}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 }}
{{- if or (not $num) (not (hasKey $units $unit)) }}
{{- fail (printf "cannot read %q as a volume size" .) }}
{{- end }}
{{- mulf (float64 $num) (get $units $unit) }}
{{- else }}
{{- float64 . }}
{{- end }}
{{- end }}

{{/* Refuses what the gateway or NATS would refuse at run time, before anything is installed:
the events stream reserves gateway.eventsMaxBytes on each NATS server that holds a replica,
which JetStream refuses (err_code 10047) when max_file_store cannot hold it beside the state
stream and the buckets; a max_file_store the volume cannot hold fails later, when the disk
is full. */}}
{{- define "frys-ws.validateLimits" -}}
{{- $g := .Values.gateway }}
{{- $n := .Values.nats }}
{{- if and $g.internalPort (eq (int $g.internalPort) (int $g.port)) }}
{{- fail (printf "gateway.internalPort (%v) must differ from gateway.port" $g.internalPort) }}
{{- end }}
{{- if and $g.autoscaling.enabled (not $g.autoscaling.targetCPUUtilizationPercentage) (not $g.autoscaling.targetConnectionsPerPod) }}
{{- fail "gateway.autoscaling needs targetCPUUtilizationPercentage, targetConnectionsPerPod or both" }}
{{- end }}
{{- if $n.enabled }}
{{- $store := include "frys-ws.natsBytes" $n.jetstream.maxFileStore | float64 }}
{{- $volume := include "frys-ws.kubeBytes" $n.jetstream.storage.size | float64 }}
{{- $events := float64 $g.eventsMaxBytes }}
{{- if gt $events (mulf $store 0.9) }}
{{- fail (printf "gateway.eventsMaxBytes (%d bytes) must be at most 90%% of nats.jetstream.maxFileStore (%s = %d bytes): JetStream would refuse the events stream (insufficient storage, err_code 10047) and leave no room for the state stream and buckets" (int64 $events) $n.jetstream.maxFileStore (int64 $store)) }}
{{- end }}
{{- if gt $store (mulf $volume 0.9) }}
{{- fail (printf "nats.jetstream.maxFileStore (%s) must be at most 90%% of nats.jetstream.storage.size (%v): the volume also holds JetStream's metadata and the file system's own reserve" $n.jetstream.maxFileStore $n.jetstream.storage.size) }}
{{- end }}
{{- end }}
{{- end }}
