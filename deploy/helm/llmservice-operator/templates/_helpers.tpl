{{/*
The Pods' `app.kubernetes.io/name`. Fixed to the chart's name, never overridable: the engine
NetworkPolicy that every LLMService renders admits metric scrapes from Pods with this label.
*/}}
{{- define "llmservice-operator.name" -}}
{{- .Chart.Name -}}
{{- end -}}

{{/*
The name of every object: fullnameOverride, else the release name when it already contains
the chart's name, else "<release>-llmservice-operator". Truncated to a 63-character label.
*/}}
{{- define "llmservice-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels: immutable once installed, so nothing here may change between releases.
The instance label keeps two releases in one namespace from selecting each other's Pods.
*/}}
{{- define "llmservice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmservice-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "llmservice-operator.labels" -}}
{{ include "llmservice-operator.selectorLabels" . }}
app.kubernetes.io/part-of: llmservice
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
Labels of the operator Pod: podLabels first, then the chart's own on top, so no value can
take the Pod out of its Deployment's selector.
*/}}
{{- define "llmservice-operator.podLabels" -}}
{{- $own := include "llmservice-operator.selectorLabels" . | fromYaml -}}
{{- $_ := set $own "app.kubernetes.io/part-of" "llmservice" -}}
{{- toYaml (merge $own (.Values.podLabels | default dict)) -}}
{{- end -}}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "llmservice-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmservice-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator image: the tag defaults to the chart's appVersion.
*/}}
{{- define "llmservice-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
