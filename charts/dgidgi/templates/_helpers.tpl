{{/*
Names are fixed where the operator and the gateway rely on them (dgidgi-gateway-config,
dgidgi-gateway-keys, dgidgi-master-key, dgidgi-admin-token, dgidgi-gateway-admin, the Lease
dgidgi-operator): they are contracts, not release-specific names.
*/}}

{{- define "dgidgi.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "dgidgi.labels" -}}
helm.sh/chart: {{ include "dgidgi.chart" . }}
app.kubernetes.io/name: dgidgi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "dgidgi.selectorLabels.operator" -}}
app.kubernetes.io/name: dgidgi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "dgidgi.selectorLabels.gateway" -}}
app.kubernetes.io/name: dgidgi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "dgidgi.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "dgidgi.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default "dgidgi-admin-token" -}}
{{- end }}

{{- define "dgidgi.operatorName" -}}dgidgi-operator{{- end }}
{{- define "dgidgi.gatewayName" -}}dgidgi-gateway{{- end }}

{{/* The same hardened settings for every pod and container of the chart. */}}
{{- define "dgidgi.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "dgidgi.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Where the admin token is mounted in both pods. */}}
{{- define "dgidgi.adminTokenDir" -}}/var/run/dgidgi/admin-token{{- end }}

{{- define "dgidgi.selectorLabels.valkey" -}}
app.kubernetes.io/name: dgidgi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: valkey
{{- end }}

{{- define "dgidgi.valkeyName" -}}dgidgi-valkey{{- end }}

{{/* "true" when the chart runs its own Valkey: enabled, and no external Redis replaces it. */}}
{{- define "dgidgi.bundledValkey" -}}
{{- if and .Values.valkey.enabled (not .Values.gateway.redis.enabled) }}true{{ end }}
{{- end }}

{{- define "dgidgi.valkeySecret" -}}
{{- .Values.valkey.auth.existingSecret | default "dgidgi-valkey" -}}
{{- end }}

{{- define "dgidgi.valkeyImage" -}}
{{- with .Values.valkey.image -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
Values that would break a promise fail the install, each naming its fix.
*/}}
{{- define "dgidgi.validate" -}}
{{- $g := .Values.gateway }}
{{- $p := $g.state.persistence }}
{{- $several := or $g.autoscaling.enabled (gt (int $g.replicas) 1) }}
{{- if and $g.redis.enabled (not $g.redis.existingSecret) }}
{{- fail "gateway.redis.enabled needs gateway.redis.existingSecret: the name of a Secret holding the Redis URL" }}
{{- end }}
{{- /* One claim for every pod: only a ReadWriteMany volume can be shared. */}}
{{- if and $p.enabled $p.existingClaim (not (has "ReadWriteMany" $p.accessModes)) $several }}
{{- fail "gateway.state.persistence.existingClaim mounts one claim in every gateway pod: with a ReadWriteOnce volume that allows one gateway replica only. Leave existingClaim empty (each pod then gets its own claim), or set accessModes [ReadWriteMany], or gateway.replicas=1, gateway.pdb.minAvailable=0 and autoscaling off" }}
{{- end }}
{{- /* Without a shared store every replica enforces each tenant's limits on its own. */}}
{{- if and $several (not (or .Values.valkey.enabled $g.redis.enabled)) (not $g.acknowledgeUnsharedLimits) }}
{{- $what := printf "gateway.replicas=%d" (int $g.replicas) }}
{{- $n := printf "%d" (int $g.replicas) }}
{{- if $g.autoscaling.enabled }}
{{- $what = printf "gateway.autoscaling (up to %d replicas)" (int $g.autoscaling.maxReplicas) }}
{{- $n = printf "up to %d" (int $g.autoscaling.maxReplicas) }}
{{- end }}
{{- fail (printf "%s without a shared store would let every gateway replica enforce each tenant's limits and budget on its own (%s times the tier). Enable the bundled store (valkey.enabled=true) or an external Redis (gateway.redis.enabled=true with gateway.redis.existingSecret), run one replica, or set gateway.acknowledgeUnsharedLimits=true to accept per-replica limits" $what $n) }}
{{- end }}
{{- /* The platform configuration: what the operator would refuse, refused at install instead
       (the schema checks each tier; these need the tiers together). */}}
{{- with .Values.platform }}
{{- $names := list }}
{{- range .tiers }}
{{- if has .name $names }}
{{- fail (printf "platform.tiers names the tier %q twice: each tier name once" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- if .defaultTier }}
{{- if and .tiers (not (has .defaultTier $names)) }}
{{- fail (printf "platform.defaultTier %q names no tier in platform.tiers (%s)" .defaultTier (join ", " $names)) }}
{{- end }}
{{- if and (not .tiers) (not (has .defaultTier (list "free" "pro" "team" "enterprise"))) }}
{{- fail (printf "platform.defaultTier %q is not one of the built-in tiers (free, pro, team, enterprise); add platform.tiers to configure your own" .defaultTier) }}
{{- end }}
{{- else if and .tiers (not (has "free" $names)) }}
{{- fail (printf "platform.defaultTier is needed when no tier in platform.tiers is named \"free\" (tiers: %s)" (join ", " $names)) }}
{{- end }}
{{- end }}
{{- end }}
