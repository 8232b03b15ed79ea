{{/* Chart name, overridable with nameOverride. */}}
{{- define "beacon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used as the prefix of every resource: fullnameOverride, else "RELEASE-CHART" (or just RELEASE
when the release name already contains the chart name). Truncated to 63 characters (DNS label limit).
*/}}
{{- define "beacon.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "beacon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels naming this release of the chart. */}}
{{- define "beacon.instanceLabels" -}}
app.kubernetes.io/name: {{ include "beacon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the server pods (Service, PDB, spread). The component label keeps the migration Job's
and the test's pods out of the Service. Never change them on upgrade: Deployment selectors are immutable.
*/}}
{{- define "beacon.selectorLabels" -}}
{{ include "beacon.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* Labels on every resource (components add app.kubernetes.io/component). */}}
{{- define "beacon.labels" -}}
helm.sh/chart: {{ include "beacon.chart" . }}
{{ include "beacon.instanceLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: beacon
{{- end }}

{{/* Image reference. */}}
{{- define "beacon.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* ServiceAccount used by the pods. */}}
{{- define "beacon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "beacon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret the pods read: existingSecret, else the chart-managed one. */}}
{{- define "beacon.secretName" -}}
{{- default (include "beacon.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Pod termination grace period. gunicorn's shutdown lasts up to DRAIN_SECONDS + 10 (graceful_timeout) and
starts after the preStop sleep, so the grace period must be longer than preStop + drain + 10.
*/}}
{{- define "beacon.terminationGracePeriodSeconds" -}}
{{- $floor := add .Values.drainSeconds .Values.preStopSleepSeconds 10 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor 5 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed drainSeconds + preStopSleepSeconds + 10 (%v): gunicorn would be killed mid-drain" .Values.terminationGracePeriodSeconds $floor) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- end }}

{{/*
Non-secret settings as NAME: "value" lines. The ConfigMap renders them; the migration Job (a pre-install
hook, which runs before the ConfigMap exists) inlines the same values.
*/}}
{{- define "beacon.configData" -}}
HEARTBEAT_SECONDS: {{ .Values.config.heartbeatSeconds | int | quote }}
REPLAY_LIMIT: {{ .Values.config.replayLimit | int | quote }}
DRAIN_SECONDS: {{ .Values.drainSeconds | int | quote }}
WEB_CONCURRENCY: {{ .Values.config.webConcurrency | int | quote }}
METRICS_PORT: {{ .Values.metrics.port | int | quote }}
WORKER_MAX_CONNECTIONS: {{ .Values.config.workerMaxConnections | int | quote }}
REPLAY_WINDOW_EVENTS: {{ .Values.config.replayWindowEvents | int | quote }}
REPLAY_WINDOW_BYTES: {{ .Values.config.replayWindowBytes | int64 | quote }}
STREAM_BATCH_SECONDS: {{ .Values.config.streamBatchSeconds | toString | quote }}
STREAM_DB_POOL_SIZE: {{ .Values.config.streamDbPoolSize | int | quote }}
PUBLISH_DB_POOL_SIZE: {{ .Values.config.publishDbPoolSize | int | quote }}
DB_THREADS: {{ .Values.config.dbThreads | int | quote }}
DB_POOL_WAIT_SECONDS: {{ .Values.config.dbPoolWaitSeconds | toString | quote }}
LISTEN_BACKLOG: {{ .Values.config.listenBacklog | int | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
ALLOWED_HOSTS: {{ join "," .Values.config.allowedHosts | quote }}
SENTRY_ENVIRONMENT: {{ .Values.config.sentryEnvironment | quote }}
METRICS_TENANT_LABELS: {{ .Values.config.metricsTenantLabels | toString | quote }}
REQUIRE_SECRET_KEY: "true"
REQUIRE_DATABASE_URL: "true"
FORWARDED_ALLOW_IPS: {{ join "," .Values.config.forwardedAllowIps | quote }}
{{- range $name, $value := .Values.config.extra }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* Secret environment variables, read from the chart's Secret or existingSecret. */}}
{{- define "beacon.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "beacon.secretName" . }}
      key: DATABASE_URL
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "beacon.secretName" . }}
      key: SECRET_KEY
- name: SENTRY_DSN
  valueFrom:
    secretKeyRef:
      name: {{ include "beacon.secretName" . }}
      key: SENTRY_DSN
      optional: true
{{- end }}

{{/* Pod-level security context (restricted Pod Security Standard). */}}
{{- define "beacon.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser | int }}
runAsGroup: {{ .Values.securityContext.runAsGroup | int }}
fsGroup: {{ .Values.securityContext.fsGroup | int }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context (restricted Pod Security Standard, read-only root filesystem). */}}
{{- define "beacon.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser | int }}
runAsGroup: {{ .Values.securityContext.runAsGroup | int }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* BROKER_URL from broker.redis.existingSecret or the chart's broker Secret; nothing for LISTEN/NOTIFY. */}}
{{- define "beacon.brokerEnv" -}}
{{- if .Values.broker.redis.existingSecret }}
- name: BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.broker.redis.existingSecret }}
      key: {{ .Values.broker.redis.existingSecretKey }}
{{- else if .Values.broker.redis.url }}
- name: BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "beacon.fullname" . }}-broker
      key: BROKER_URL
{{- end }}
{{- end }}
