{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "otaplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used as the prefix of every resource name: fullnameOverride, or "<release>-<name>",
or the release name alone when it already contains the name. Truncated to 63 characters, the
limit of some Kubernetes name fields.
*/}}
{{- define "otaplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "otaplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource of the release.
*/}}
{{- define "otaplane.labels" -}}
helm.sh/chart: {{ include "otaplane.chart" . }}
{{ include "otaplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: otaplane
{{- end }}

{{/*
Labels that select the operator pods.
*/}}
{{- define "otaplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otaplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "otaplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "otaplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository and tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "otaplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Whether leader election is on: leaderElection.enabled when set, otherwise replicas > 1.
Renders "true" or "false". Refuses several replicas without leader election, as each replica
would then drive the vendors.
*/}}
{{- define "otaplane.leaderElect" -}}
{{- $enabled := .Values.leaderElection.enabled }}
{{- if kindIs "invalid" $enabled }}
{{- $enabled = gt (int .Values.replicas) 1 }}
{{- end }}
{{- if and (not $enabled) (gt (int .Values.replicas) 1) }}
{{- fail "replicas > 1 needs leader election: unset leaderElection.enabled or set it to true" }}
{{- end }}
{{- ternary "true" "false" $enabled }}
{{- end }}

{{/*
RBAC rules of the operator for its own kinds, Secrets and Events: in a ClusterRole when every
namespace is watched, in one Role per namespace otherwise.
*/}}
{{- define "otaplane.rules" -}}
- apiGroups: ["otaplane.io"]
  resources: ["otaproviders", "firmwarepackages", "upgradecampaigns"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["otaplane.io"]
  resources: ["otaproviders/status", "firmwarepackages/status", "upgradecampaigns/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["otaplane.io"]
  resources: ["otaproviders/finalizers", "firmwarepackages/finalizers", "upgradecampaigns/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
