{{/* Labels on every object the chart installs. */}}
{{- define "meshery-operator.labels" -}}
app.kubernetes.io/name: meshery-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: meshery
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator pods' selector; `name: meshery-operator` is what the troubleshooting commands use. */}}
{{- define "meshery-operator.selectorLabels" -}}
name: meshery-operator
app.kubernetes.io/name: meshery-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshery-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}
