{{/* Rendered by `airside render` from src/airside/packaging; edit the templates there, then `make render`. */}}

{{/* Names. Kubernetes names are at most 63 characters (DNS label): every name helper truncates here. */}}
{{- define "airside.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "airside.fullname" -}}
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

{{- define "airside.web.fullname" -}}
{{- printf "%s-web" (include "airside.fullname" . | trunc 59) | trimSuffix "-" }}
{{- end }}

{{- define "airside.worker.fullname" -}}
{{- printf "%s-worker" (include "airside.fullname" . | trunc 56) | trimSuffix "-" }}
{{- end }}

{{- define "airside.artifactStore.fullname" -}}
{{- printf "%s-artifacts" (include "airside.fullname" . | trunc 53) | trimSuffix "-" }}
{{- end }}

{{- define "airside.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "airside.fullname" . | trunc 52) | trimSuffix "-" }}
{{- end }}

{{- define "airside.secretName" -}}
{{- default (include "airside.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "airside.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "airside.web.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels: app.kubernetes.io/*. Call with (dict "ctx" . "component" "web"). */}}
{{- define "airside.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airside.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "airside.labels" -}}
{{ include "airside.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* web's URL inside the cluster: https when web.tls.secretName is set. */}}
{{- define "airside.web.url" -}}
{{- printf "%s://%s:%v" (ternary "https" "http" (not (empty .Values.web.tls.secretName))) (include "airside.web.fullname" .) .Values.web.service.port }}
{{- end }}

{{/* Volume + mount of the CA that verifies web (web.tls.caKey of web.tls.secretName), for workers and tests. */}}
{{- define "airside.webCA.volume" -}}
{{- if and .Values.web.tls.secretName .Values.web.tls.caKey }}
- name: web-ca
  secret:
    secretName: {{ .Values.web.tls.secretName }}
    items:
      - key: {{ .Values.web.tls.caKey }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "airside.webCA.mount" -}}
{{- if and .Values.web.tls.secretName .Values.web.tls.caKey }}
- name: web-ca
  mountPath: /etc/airside/web-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "airside.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when tasks run as Kubernetes Jobs: the value, or the web setting `runtime`. */}}
{{- define "airside.kubernetesRuntime" -}}
{{- if or .Values.kubernetesRuntime.enabled (eq (toString (index .Values.airside.web "runtime")) "kubernetes") }}true{{ else }}false{{ end }}
{{- end }}

{{- define "airside.jobNamespace" -}}
{{- default .Release.Namespace .Values.kubernetesRuntime.jobNamespace }}
{{- end }}

{{- define "airside.artifactStore.enabled" -}}
{{- if or .Values.artifactStore.enabled (eq (include "airside.kubernetesRuntime" .) "true") }}true{{ else }}false{{ end }}
{{- end }}

{{/* The worker's grace period: the value, else the drain timeout (the setting, or the binary default
300) plus 30s to fail leftover work with a reason and deregister. */}}
{{- define "airside.worker.terminationGracePeriodSeconds" -}}
{{- if not (kindIs "invalid" .Values.worker.terminationGracePeriodSeconds) }}
{{- .Values.worker.terminationGracePeriodSeconds | int64 }}
{{- else }}
{{- $drain := 300 }}
{{- if not (kindIs "invalid" .Values.airside.worker.drain_timeout) }}{{ $drain = .Values.airside.worker.drain_timeout }}{{ end }}
{{- add (ceil $drain | int64) 30 }}
{{- end }}
{{- end }}

{{/* Where web's database URL comes from, as JSON {"name": secret, "key": key}; {} means SQLite. */}}
{{- define "airside.databaseSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- dict "name" (include "airside.secretName" .) "key" "database_url" | toJson }}
{{- else if .Values.externalDatabase.existingSecret }}
{{- dict "name" .Values.externalDatabase.existingSecret "key" .Values.externalDatabase.secretKey | toJson }}
{{- else if .Values.externalDatabase.url }}
{{- dict "name" (include "airside.secretName" .) "key" "database_url" | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/* Env of `airside web`, generated from the settings model: a value set under
airside.web wins, else what the chart manages (if anything), else nothing (binary default). */}}
{{- define "airside.web.env" -}}
{{- $s := .Values.airside.web -}}
{{- $v := index $s "log_level" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_LOG_LEVEL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "log_format" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_LOG_FORMAT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "data_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DATA_DIR
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_DATA_DIR
  value: "/var/lib/airside"
{{- end }}
{{- $v := index $s "bind_host" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BIND_HOST
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_BIND_HOST
  value: "0.0.0.0"
{{- end }}
{{- $v := index $s "bind_port" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BIND_PORT
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "database_url" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DATABASE_URL
  value: {{ (toString $v) | quote }}
{{- else }}
{{- $db := include "airside.databaseSecret" . | fromJson }}
{{- if $db.name }}
- name: AIRSIDE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $db.name }}
      key: {{ $db.key }}
{{- end }}
{{- end }}
{{- $v := index $s "auto_migrate" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_AUTO_MIGRATE
  value: {{ (ternary "true" "false" $v) | quote }}
{{- end }}
{{- $v := index $s "database_wait_timeout" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DATABASE_WAIT_TIMEOUT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "heartbeat_ttl" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_HEARTBEAT_TTL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "stalled_prune_after" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_STALLED_PRUNE_AFTER
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "sweep_interval" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_SWEEP_INTERVAL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "max_request_bytes" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_MAX_REQUEST_BYTES
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "authorized_worker_keys" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_AUTHORIZED_WORKER_KEYS
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "tls_cert_file" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_TLS_CERT_FILE
  value: {{ (toString $v) | quote }}
{{- else }}
{{- if .Values.web.tls.secretName }}
- name: AIRSIDE_TLS_CERT_FILE
  value: "/etc/airside/tls/tls.crt"
{{- end }}
{{- end }}
{{- $v := index $s "tls_key_file" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_TLS_KEY_FILE
  value: {{ (toString $v) | quote }}
{{- else }}
{{- if .Values.web.tls.secretName }}
- name: AIRSIDE_TLS_KEY_FILE
  value: "/etc/airside/tls/tls.key"
{{- end }}
{{- end }}
{{- $v := index $s "scheduler_strategy" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_SCHEDULER_STRATEGY
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "requeue_budget" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_REQUEUE_BUDGET
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "max_upload_bytes" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_MAX_UPLOAD_BYTES
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "artifact_ttl" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_ARTIFACT_TTL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "cache_ttl" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_CACHE_TTL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "allow_privileged_tasks" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_ALLOW_PRIVILEGED_TASKS
  value: {{ (ternary "true" "false" $v) | quote }}
{{- end }}
{{- $v := index $s "runtime" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_RUNTIME
  value: {{ (toString $v) | quote }}
{{- else }}
{{- if .Values.kubernetesRuntime.enabled }}
- name: AIRSIDE_RUNTIME
  value: "kubernetes"
{{- end }}
{{- end }}
{{- $v := index $s "kubernetes_tag" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_TAG
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_artifact_web_url" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_ARTIFACT_WEB_URL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_namespace" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_NAMESPACE
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_KUBERNETES_NAMESPACE
  value: {{ include "airside.jobNamespace" . | quote }}
{{- end }}
{{- $v := index $s "kubernetes_service_account" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_SERVICE_ACCOUNT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_node_selector" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_NODE_SELECTOR
  value: {{ (toJson $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_tolerations" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_TOLERATIONS
  value: {{ (toJson $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_image_pull_secrets" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_IMAGE_PULL_SECRETS
  value: {{ (join "," $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_tag_placement" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_TAG_PLACEMENT
  value: {{ (toJson $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_priority_class_name" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_PRIORITY_CLASS_NAME
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_runtime_class_name" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_RUNTIME_CLASS_NAME
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_default_cpu_shares" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_DEFAULT_CPU_SHARES
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_default_memory_mib" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_DEFAULT_MEMORY_MIB
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_cpu_limit_ratio" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_CPU_LIMIT_RATIO
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_task_timeout" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_TASK_TIMEOUT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_schedule_timeout" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_SCHEDULE_TIMEOUT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_ttl_after_finished" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_TTL_AFTER_FINISHED
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "kubernetes_airside_image" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_AIRSIDE_IMAGE
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_KUBERNETES_AIRSIDE_IMAGE
  value: {{ include "airside.image" . | quote }}
{{- end }}
{{- $v := index $s "kubernetes_artifact_url" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_ARTIFACT_URL
  value: {{ (toString $v) | quote }}
{{- else }}
{{- if eq (include "airside.artifactStore.enabled" .) "true" }}
- name: AIRSIDE_KUBERNETES_ARTIFACT_URL
  value: {{ printf "http://%s:%v" (include "airside.artifactStore.fullname" .) (index .Values.airside.baggageclaim "baggageclaim_bind_port" | default 7788) | quote }}
{{- end }}
{{- end }}
{{- $v := index $s "kubernetes_kubeconfig" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_KUBERNETES_KUBECONFIG
  value: {{ (toString $v) | quote }}
{{- end }}
- name: AIRSIDE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "airside.secretName" . }}
      key: token
- name: AIRSIDE_WORKER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "airside.secretName" . }}
      key: worker_token
- name: AIRSIDE_BAGGAGECLAIM_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "airside.secretName" . }}
      key: baggageclaim_token
{{- end }}

{{/* Env of `airside worker`, generated from the settings model: a value set under
airside.worker wins, else what the chart manages (if anything), else nothing (binary default). */}}
{{- define "airside.worker.env" -}}
{{- $s := .Values.airside.worker -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- $v := index $s "log_level" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_LOG_LEVEL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "log_format" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_LOG_FORMAT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "data_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DATA_DIR
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_DATA_DIR
  value: "/var/lib/airside"
{{- end }}
{{- $v := index $s "web_url" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_WEB_URL
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_WEB_URL
  value: {{ include "airside.web.url" . | quote }}
{{- end }}
{{- $v := index $s "tls_ca_file" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_TLS_CA_FILE
  value: {{ (toString $v) | quote }}
{{- else }}
{{- if and .Values.web.tls.secretName .Values.web.tls.caKey }}
- name: AIRSIDE_TLS_CA_FILE
  value: "/etc/airside/web-ca/ca.crt"
{{- end }}
{{- end }}
{{- $v := index $s "worker_name" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_WORKER_NAME
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_WORKER_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- $v := index $s "platform" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_PLATFORM
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "tags" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_TAGS
  value: {{ (join "," $v) | quote }}
{{- end }}
{{- $v := index $s "team" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_TEAM
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "ephemeral" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_EPHEMERAL
  value: {{ (ternary "true" "false" $v) | quote }}
{{- end }}
{{- $v := index $s "heartbeat_interval" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_HEARTBEAT_INTERVAL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "drain_timeout" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DRAIN_TIMEOUT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "worker_key" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_WORKER_KEY
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "work_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_WORK_DIR
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_WORK_DIR
  value: "/var/lib/airside/worker"
{{- end }}
{{- $v := index $s "runtime_url" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_RUNTIME_URL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "worker_runtime" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_WORKER_RUNTIME
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "reaper_interval" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_REAPER_INTERVAL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "allow_privileged_tasks" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_ALLOW_PRIVILEGED_TASKS
  value: {{ (ternary "true" "false" $v) | quote }}
{{- end }}
{{- $v := index $s "max_concurrent_tasks" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_MAX_CONCURRENT_TASKS
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "resource_types_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_RESOURCE_TYPES_DIR
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "container_network" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_CONTAINER_NETWORK
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "network_pool" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_NETWORK_POOL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "dns_servers" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DNS_SERVERS
  value: {{ (join "," $v) | quote }}
{{- end }}
{{- $v := index $s "restricted_networks" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_RESTRICTED_NETWORKS
  value: {{ (join "," $v) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_bind_host" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_BIND_HOST
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_BAGGAGECLAIM_BIND_HOST
  value: "0.0.0.0"
{{- end }}
{{- $v := index $s "baggageclaim_bind_port" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_BIND_PORT
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_url" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_URL
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_BAGGAGECLAIM_URL
  value: {{ printf "http://$(POD_IP):%v" (index .Values.airside.worker "baggageclaim_bind_port" | default 7788) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_stream_max_bytes" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_STREAM_MAX_BYTES
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_sweep_interval" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_SWEEP_INTERVAL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_btrfs_image_mib" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_BTRFS_IMAGE_MIB
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_driver" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_DRIVER
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "volumes_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_VOLUMES_DIR
  value: {{ (toString $v) | quote }}
{{- end }}
- name: AIRSIDE_WORKER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "airside.secretName" . }}
      key: worker_token
- name: AIRSIDE_BAGGAGECLAIM_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "airside.secretName" . }}
      key: baggageclaim_token
{{- end }}

{{/* Env of `airside baggageclaim`, generated from the settings model: a value set under
airside.baggageclaim wins, else what the chart manages (if anything), else nothing (binary default). */}}
{{- define "airside.baggageclaim.env" -}}
{{- $s := .Values.airside.baggageclaim -}}
{{- $v := index $s "log_level" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_LOG_LEVEL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "log_format" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_LOG_FORMAT
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "data_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_DATA_DIR
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_DATA_DIR
  value: "/var/lib/airside"
{{- end }}
{{- $v := index $s "baggageclaim_bind_host" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_BIND_HOST
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_BAGGAGECLAIM_BIND_HOST
  value: "0.0.0.0"
{{- end }}
{{- $v := index $s "baggageclaim_bind_port" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_BIND_PORT
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_stream_max_bytes" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_STREAM_MAX_BYTES
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_sweep_interval" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_SWEEP_INTERVAL
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_btrfs_image_mib" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_BTRFS_IMAGE_MIB
  value: {{ (int64 $v | toString) | quote }}
{{- end }}
{{- $v := index $s "baggageclaim_driver" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_BAGGAGECLAIM_DRIVER
  value: {{ (toString $v) | quote }}
{{- end }}
{{- $v := index $s "volumes_dir" }}
{{- if not (kindIs "invalid" $v) }}
- name: AIRSIDE_VOLUMES_DIR
  value: {{ (toString $v) | quote }}
{{- else }}
- name: AIRSIDE_VOLUMES_DIR
  value: "/var/lib/airside/volumes"
{{- end }}
- name: AIRSIDE_BAGGAGECLAIM_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "airside.secretName" . }}
      key: baggageclaim_token
{{- end }}
