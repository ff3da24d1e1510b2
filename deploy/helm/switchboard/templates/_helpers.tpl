{{- define "switchboard.fullname" -}}
{{- printf "%s-switchboard" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "switchboard.labels" -}}
app.kubernetes.io/name: switchboard
app.kubernetes.io/part-of: switchboard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* Selector of one component's pods: (dict "root" $ "component" "auth"). */}}
{{- define "switchboard.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of a pod template: labels, component, podLabels. */}}
{{- define "switchboard.podLabels" -}}
{{ include "switchboard.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "switchboard.image" -}}
{{- if .Values.image.digest -}}
image: "{{ .Values.image.repository }}@{{ .Values.image.digest }}"
{{- else -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
{{- end }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "switchboard.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "switchboard.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}{{ .Values.tls.existingSecret }}{{- else -}}{{ include "switchboard.fullname" . }}-tls{{- end -}}
{{- end -}}

{{- define "switchboard.adminSecret" -}}
{{- if .Values.adminToken.existingSecret -}}{{ .Values.adminToken.existingSecret }}{{- else -}}{{ include "switchboard.fullname" . }}-admin{{- end -}}
{{- end -}}

{{- define "switchboard.redisSecret" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecret }}{{- else -}}{{ include "switchboard.fullname" . }}-redis{{- end -}}
{{- end -}}

{{- define "switchboard.internalTlsSecret" -}}
{{- if .Values.internalTls.existingSecret -}}{{ .Values.internalTls.existingSecret }}{{- else -}}{{ include "switchboard.fullname" . }}-internal-tls{{- end -}}
{{- end -}}

{{/* Scheme of the internal gRPC URLs. */}}
{{- define "switchboard.scheme" -}}
{{- if .Values.internalTls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{- define "switchboard.authUrl" -}}
{{ include "switchboard.scheme" . }}://{{ include "switchboard.fullname" . }}-auth-replicas:7001
{{- end -}}
{{- define "switchboard.placementUrl" -}}
{{ include "switchboard.scheme" . }}://{{ include "switchboard.fullname" . }}-placement-replicas:7002
{{- end -}}
{{- define "switchboard.storeUrl" -}}
{{ include "switchboard.scheme" . }}://{{ include "switchboard.fullname" . }}-session-store-replicas:7003
{{- end -}}

{{/*
Pod-level settings every Switchboard pod shares: service account, security context, pull secrets,
scheduling. (dict "root" $ "component" "auth")
*/}}
{{- define "switchboard.podSpec" -}}
serviceAccountName: {{ include "switchboard.serviceAccountName" .root }}
automountServiceAccountToken: false
securityContext: {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - topologyKey: {{ $key }}
    maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels: {{- include "switchboard.selector" (dict "root" $.root "component" $.component) | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotations: checksums of the chart's Secrets and ConfigMaps, then podAnnotations. */}}
{{- define "switchboard.podAnnotations" -}}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- if .Values.internalTls.certManager.enabled }}
checksum/internal-tls: {{ toYaml .Values.internalTls | sha256sum }}
{{- end }}
{{- if and .Values.metrics.enabled .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The metrics listen address of a service container, when metrics are enabled. */}}
{{- define "switchboard.metricsEnv" -}}
{{- if .Values.metrics.enabled }}
- name: SWITCHBOARD_METRICS_LISTEN
  value: {{ printf "0.0.0.0:%v" .Values.metrics.port | quote }}
{{- end }}
{{- end -}}

{{/* The OTLP trace export of a service container, when tracing.otlpEndpoint is set. */}}
{{- define "switchboard.tracingEnv" -}}
{{- if .Values.tracing.otlpEndpoint }}
- name: SWITCHBOARD_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
- name: SWITCHBOARD_OTLP_SAMPLING_RATIO
  value: {{ .Values.tracing.samplingRatio | quote }}
{{- end }}
{{- end -}}

{{/* The metrics container port, when metrics are enabled (a list item). */}}
{{- define "switchboard.metricsPort" -}}
{{- if .Values.metrics.enabled }}
- {name: metrics, containerPort: {{ .Values.metrics.port }}}
{{- end }}
{{- end -}}

{{/* Environment every service container shares. */}}
{{- define "switchboard.commonEnv" -}}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: SWITCHBOARD_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- if .Values.internalTls.enabled }}
- name: SWITCHBOARD_INTERNAL_TLS_CA_FILE
  value: /run/switchboard/internal-tls/ca.crt
- name: SWITCHBOARD_INTERNAL_TLS_CERT_FILE
  value: /run/switchboard/internal-tls/tls.crt
- name: SWITCHBOARD_INTERNAL_TLS_KEY_FILE
  value: /run/switchboard/internal-tls/tls.key
- name: SWITCHBOARD_INTERNAL_TLS_CLIENT_AUTH
  value: {{ .Values.internalTls.clientAuth | quote }}
{{- end }}
{{- end -}}

{{/* Volumes every service pod has: a writable /tmp, and the internal TLS files when enabled. */}}
{{- define "switchboard.commonVolumes" -}}
- name: tmp
  emptyDir: {medium: Memory, sizeLimit: 16Mi}
{{- if .Values.internalTls.enabled }}
- name: internal-tls
  secret: {secretName: {{ include "switchboard.internalTlsSecret" . }}}
{{- end }}
{{- end -}}

{{- define "switchboard.commonVolumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.internalTls.enabled }}
- {name: internal-tls, mountPath: /run/switchboard/internal-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "switchboard.redisEnv" -}}
- name: SWITCHBOARD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.redisSecret" . }}
      key: url
- name: SWITCHBOARD_REDIS_KEY_PREFIX
  value: {{ .Values.redis.keyPrefix | quote }}
{{- if not (kindIs "invalid" .Values.redis.waitReplicas) }}
- name: SWITCHBOARD_REDIS_WAIT_REPLICAS
  value: {{ .Values.redis.waitReplicas | quote }}
{{- end }}
- name: SWITCHBOARD_REDIS_WAIT_TIMEOUT_MS
  value: {{ .Values.redis.waitTimeoutMs | quote }}
{{- end -}}

{{/*
Probes of an internal gRPC port: gRPC health checks when the port is plaintext, TCP when internal TLS is
on (kubelet's gRPC probe cannot speak TLS). The gRPC health is NOT_SERVING while the service drains and
while its storage backend does not answer, so readiness follows it; liveness is always a TCP check, so an
outage of Redis takes pods out of rotation without restarting them.
With "httpsHealthPort" (session-store's agent port, unless it requires client certificates) startup and
readiness are `HTTPS GET /health` there instead: the same overall status, readable whatever the internal
TLS (kubelet does not verify the certificate).
(dict "port" 7001 "service" "switchboard.v1.Auth" "tls" bool ["httpsHealthPort" "agents"])
*/}}
{{- define "switchboard.grpcProbes" -}}
{{- $alive := dict "tcpSocket" (dict "port" .port) -}}
{{- $check := dict "grpc" (dict "port" .port "service" .service) -}}
{{- if .tls }}{{ $check = $alive }}{{ end -}}
{{- if .httpsHealthPort }}{{ $check = dict "httpGet" (dict "port" .httpsHealthPort "path" "/health" "scheme" "HTTPS") }}{{ end -}}
startupProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 5
livenessProbe:
  {{- toYaml $alive | nindent 2 }}
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{/* Peers admitted to the internal gRPC ports: this release's own pods, then networkPolicy.internalExtraFrom. */ -}}
{{- define "switchboard.internalPeers" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/part-of: switchboard
      app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Values.networkPolicy.internalExtraFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "switchboard.cidrPeers" -}}
{{- range . }}
- ipBlock: {cidr: {{ . | quote }}}
{{- end }}
{{- end -}}
