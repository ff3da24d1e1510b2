{{- define "switchboard.fullname" -}}
{{- printf "%s-switchboard" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.labels" -}}
app.kubernetes.io/part-of: switchboard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "switchboard.image" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
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

{{/* Environment every container shares. */}}
{{- define "switchboard.commonEnv" -}}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: SWITCHBOARD_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{- define "switchboard.redisEnv" -}}
- name: SWITCHBOARD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.redisSecret" . }}
      key: url
- name: SWITCHBOARD_REDIS_KEY_PREFIX
  value: {{ .Values.redis.keyPrefix | quote }}
{{- end -}}
