{{/* Names */}}
{{- define "loyalty-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loyalty-connector.fullname" -}}
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

{{- define "loyalty-connector.bridgeName" -}}
{{- printf "%s-bridge" (include "loyalty-connector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loyalty-connector.workerName" -}}
{{- printf "%s-worker" (include "loyalty-connector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loyalty-connector.headlessName" -}}
{{- printf "%s-worker-headless" (include "loyalty-connector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loyalty-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "ctx" $ "component" "bridge"|"worker") */}}
{{- define "loyalty-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loyalty-connector.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "loyalty-connector.labels" -}}
helm.sh/chart: {{ include "loyalty-connector.chart" .ctx }}
{{ include "loyalty-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: loyalty-connector
{{- end }}

{{- define "loyalty-connector.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Secrets */}}
{{- define "loyalty-connector.secretName" -}}
{{- if .Values.secrets.create }}
{{- include "loyalty-connector.fullname" . }}
{{- else }}
{{- .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{- define "loyalty-connector.tenantsSecretName" -}}
{{- if .Values.secrets.create }}
{{- if .Values.secrets.tenantsToml }}
{{- printf "%s-tenants" (include "loyalty-connector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- else }}
{{- .Values.secrets.existingTenantsSecret }}
{{- end }}
{{- end }}

{{/* The connector's secret settings (connector/settings.py, `secret=True`). */}}
{{- define "loyalty-connector.secretVars" -}}
{{- list "CONNECTOR_GAMEBALL_SECRET_KEY" "CONNECTOR_OPEN_LOYALTY_HEADER_VALUE" "CONNECTOR_OPEN_LOYALTY_HMAC_SECRET" "CONNECTOR_VOUCHERIFY_SECRET_KEY" "CONNECTOR_WIX_PRIVATE_KEY" "CONNECTOR_SCHEMA_REGISTRY_PASSWORD" | toJson }}
{{- end }}

{{/* Checks shared by every template: fail early with a message naming the value. */}}
{{- define "loyalty-connector.validate" -}}
{{- if not (trim (toString (default "" .Values.kafka.brokerUrl))) }}
{{- fail "kafka.brokerUrl is required: the Kafka bootstrap servers, host:port[,host:port], e.g. --set kafka.brokerUrl=kafka.kafka.svc:9092" }}
{{- end }}
{{- $pg := toString .Values.worker.processingGuarantee }}
{{- if not (has $pg (list "at_least_once" "exactly_once")) }}
{{- fail (printf "worker.processingGuarantee=%q: expected at_least_once or exactly_once" $pg) }}
{{- end }}
{{- $grace := .Values.worker.terminationGracePeriodSeconds }}
{{- if lt (int $grace) 30 }}
{{- fail (printf "worker.terminationGracePeriodSeconds=%v: must be at least 30 (a worker needs the time to commit, flush its table store and leave the consumer group)" $grace) }}
{{- end }}
{{- if lt (int .Values.partitions) 1 }}
{{- fail (printf "partitions=%v: must be at least 1" .Values.partitions) }}
{{- end }}
{{- if and .Values.secrets.create .Values.secrets.existingSecret }}
{{- fail "secrets.create and secrets.existingSecret are both set: choose one" }}
{{- end }}
{{- if and (not .Values.secrets.create) .Values.secrets.tenantsToml }}
{{- fail "secrets.tenantsToml needs secrets.create=true (or put the file in secrets.existingTenantsSecret)" }}
{{- end }}
{{- if and (not .Values.secrets.create) (gt (len .Values.secrets.env) 0) }}
{{- fail "secrets.env needs secrets.create=true (or put the keys in secrets.existingSecret)" }}
{{- end }}
{{- if and .Values.secrets.create .Values.secrets.existingTenantsSecret }}
{{- fail "secrets.existingTenantsSecret is for secrets.create=false; with create=true use secrets.tenantsToml" }}
{{- end }}
{{- $secretVars := include "loyalty-connector.secretVars" . | fromJsonArray }}
{{- range $e := concat .Values.extraEnv .Values.bridge.extraEnv .Values.worker.extraEnv }}
{{- if and (has $e.name $secretVars) (hasKey $e "value") }}
{{- fail (printf "extraEnv: %s is a secret; put it in secrets.env or the existing Secret, not in a plain value" $e.name) }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.secrets.env }}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $k) }}
{{- fail (printf "secrets.env: %q is not an environment variable name" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment shared by bridge and worker. */}}
{{- define "loyalty-connector.commonEnv" -}}
# The user has no home directory in the image and the root filesystem is read-only.
- name: HOME
  value: /tmp
- name: CONNECTOR_BROKER_URL
  value: {{ trim (toString .Values.kafka.brokerUrl) | quote }}
- name: CONNECTOR_TOPIC_PREFIX
  value: {{ .Values.topicPrefix | toString | quote }}
- name: CONNECTOR_PARTITIONS
  value: {{ int .Values.partitions | toString | quote }}
- name: CONNECTOR_REPLICATION_FACTOR
  value: {{ int .Values.replicationFactor | toString | quote }}
{{- end }}

{{/* Pod annotations (YAML of a map): Prometheus scrape annotations unless a ServiceMonitor
scrapes, then the component's podAnnotations. Call with (dict "ctx" $ "port" N "extra" map). */}}
{{- define "loyalty-connector.podAnnotations" -}}
{{- $ann := dict }}
{{- if not .ctx.Values.serviceMonitor.enabled }}
{{- $_ := set $ann "prometheus.io/scrape" "true" }}
{{- $_ := set $ann "prometheus.io/port" (toString (int .port)) }}
{{- $_ := set $ann "prometheus.io/path" .ctx.Values.metrics.path }}
{{- end }}
{{- range $k, $v := .extra }}
{{- $_ := set $ann $k (toString $v) }}
{{- end }}
{{- toYaml $ann }}
{{- end }}
