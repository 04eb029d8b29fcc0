{{/* Names and labels shared by every template. */}}

{{- define "swarmkeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "swarmkeeper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "swarmkeeper.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "swarmkeeper.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "swarmkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "swarmkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "swarmkeeper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "swarmkeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "swarmkeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "swarmkeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespaces watched when not all of them are: the release namespace by default. */}}
{{- define "swarmkeeper.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- join "," .Values.watch.namespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* What the operator needs wherever it watches custom resources. Every rule says why. */}}
{{- define "swarmkeeper.watchRules" }}
# The custom resources: kopf lists and watches them (get/list/watch) and patches them to add and
# remove its finalizer and its bookkeeping annotations (patch). Never create, update or delete:
# users own the objects; the operator only reacts to them.
- apiGroups: [swarmkeeper.io]
  resources: [swarmservices, swarmnetworks, swarmsecrets, swarmconfigs, swarmclusters, swarmalerts]
  verbs: [get, list, watch, patch]
# Their status subresource: every pass merge-patches the live swarm status into it (READY 3/3,
# conditions, observedGeneration). /scale is not listed: `kubectl scale` writes spec.replicas
# through it and the operator reads that from the resource itself.
- apiGroups: [swarmkeeper.io]
  resources:
    - swarmservices/status
    - swarmnetworks/status
    - swarmsecrets/status
    - swarmconfigs/status
    - swarmclusters/status
    - swarmalerts/status
  verbs: [get, patch]
# Secrets and ConfigMaps: get reads the key a SwarmSecret's (Secret) or SwarmConfig's (ConfigMap)
# spec.secretRef names; list and watch let a rotated value reach the swarm at once instead of at
# the next resync. Values go only into swarm secrets/configs, never into logs, status or Events.
# get also reads operator.registryAuthSecret (registry logins), sent only to the engine.
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get, list, watch]
# Events on the custom resources: Applied, DriftCorrected, ApplyFailed, InvalidSpec, Deleted.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
