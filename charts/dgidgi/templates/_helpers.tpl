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
