{{/* Names follow helm create's conventions: with the release called
"edgeagent" (as the docs install it) every object has the name the kustomize
base deploy/daemonset gives it. */}}
{{- define "edgeagent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edgeagent.fullname" -}}
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

{{/* The labels of deploy/daemonset plus Helm's own. */}}
{{- define "edgeagent.labels" -}}
app.kubernetes.io/name: {{ include "edgeagent.name" . }}
app.kubernetes.io/part-of: edgeagent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The DaemonSet's selector: immutable, and the same as the kustomize
base's, so a kustomize installation can be taken over by the chart. */}}
{{- define "edgeagent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgeagent.name" . }}
{{- end }}

{{- define "edgeagent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edgeagent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "edgeagent.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The port of a "host:port" listen address. */}}
{{- define "edgeagent.port" -}}
{{- $parts := splitList ":" . }}
{{- last $parts }}
{{- end }}

{{/* Where the APV credentials Secret is mounted (as in the kustomize base). */}}
{{- define "edgeagent.apvCredentialsDir" -}}
/etc/edgeagent/apv
{{- end }}

{{- define "edgeagent.apvSecretName" -}}
{{- default (printf "%s-apv" (include "edgeagent.fullname" .)) .Values.apv.credentialsSecret }}
{{- end }}

{{/* The agent's config file: .Values.config plus the APV devices, whose
credential files point into the mounted Secret. */}}
{{- define "edgeagent.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- with .Values.apv.devices }}
{{- $dir := include "edgeagent.apvCredentialsDir" $ }}
{{- $devices := list }}
{{- range . }}
{{- $d := dict "name" .name "url" .url }}
{{- $_ := set $d "usernameFile" (default (printf "%s/%s-username" $dir .name) .usernameFile) }}
{{- $_ := set $d "passwordFile" (default (printf "%s/%s-password" $dir .name) .passwordFile) }}
{{- if .caFile }}
{{- $_ := set $d "caFile" .caFile }}
{{- else if .ca }}
{{- $_ := set $d "caFile" (printf "%s/%s-ca.crt" $dir .name) }}
{{- end }}
{{- if .insecureSkipVerify }}
{{- $_ := set $d "insecureSkipVerify" true }}
{{- end }}
{{- $devices = append $devices $d }}
{{- end }}
{{- $apv := dict "devices" $devices }}
{{- with $.Values.apv.syncInterval }}{{ $_ := set $apv "syncInterval" . }}{{ end }}
{{- with $.Values.apv.scanInterval }}{{ $_ := set $apv "scanInterval" . }}{{ end }}
{{- $_ := set $cfg "apv" $apv }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Labels for the monitoring objects: the object's own, the shared extra
ones (kube-prometheus-stack's release: ...) and the chart's, in that order
of precedence. Argument: (list $ $ownLabels). */}}
{{- define "edgeagent.monitoringLabels" -}}
{{- $root := index . 0 }}
{{- $chart := include "edgeagent.labels" $root | fromYaml }}
{{- $all := merge (dict) (index . 1 | default dict) ($root.Values.monitoring.additionalLabels | default dict) $chart }}
{{- toYaml $all }}
{{- end }}
