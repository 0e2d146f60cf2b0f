{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "ocpp-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: "<release>-<name>", or the release name when it already contains the name. */}}
{{- define "ocpp-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>", still at most 63 characters. */}}
{{- define "ocpp-gateway.suffixed" -}}
{{- $suffix := .suffix -}}
{{- printf "%s-%s" (include "ocpp-gateway.fullname" .ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "ocpp-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "ocpp-gateway.labels" -}}
helm.sh/chart: {{ include "ocpp-gateway.chart" . }}
{{ include "ocpp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ocpp-gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the gateway pods (immutable in a Deployment: never add to them). */}}
{{- define "ocpp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocpp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ocpp-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ocpp-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ocpp-gateway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Charger and admin ports, from the gateway config (its defaults when unset). */}}
{{- define "ocpp-gateway.listenPort" -}}
{{- $listen := default (dict) .Values.config.listen -}}
{{- int (default 9000 $listen.port) -}}
{{- end -}}

{{- define "ocpp-gateway.adminPort" -}}
{{- $admin := default (dict) .Values.config.admin -}}
{{- int (default 9001 $admin.port) -}}
{{- end -}}

{{/*
The Secret the admin token comes from (env OCPPGW_ADMIN_TOKEN): adminToken.existingSecret, else the Secret the
chart creates (templates/secret-admin-token.yaml) when adminToken.create; empty = none (config.admin.token as given).
*/}}
{{- define "ocpp-gateway.adminTokenSecretName" -}}
{{- if .Values.adminToken.existingSecret -}}
{{- .Values.adminToken.existingSecret -}}
{{- else if .Values.adminToken.create -}}
{{- include "ocpp-gateway.suffixed" (dict "ctx" . "suffix" "admin-token") -}}
{{- end -}}
{{- end -}}

{{/*
The gateway config file: .Values.config with the settings the chart owns filled in (admin token and Redis URL
from Secrets, as ${ENV} references resolved by the gateway at start).
*/}}
{{- define "ocpp-gateway.configYaml" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- $admin := deepCopy (default (dict) (get $cfg "admin")) -}}
{{- $adminHost := toString (default "127.0.0.1" (get $admin "host")) -}}
{{- if or (eq $adminHost "127.0.0.1") (eq $adminHost "localhost") (eq $adminHost "::1") -}}
{{- fail "config.admin.host is a loopback address: the kubelet probes /healthz and /readyz and Prometheus scrapes /metrics on the pod IP; set config.admin.host to 0.0.0.0 (and adminToken.existingSecret to protect /api/*)" -}}
{{- end -}}
{{- if include "ocpp-gateway.adminTokenSecretName" . -}}
{{- $_ := set $admin "token" "${OCPPGW_ADMIN_TOKEN}" -}}
{{- else if not (get $admin "token") -}}
{{- fail "config.admin.token is required (the gateway refuses a non-loopback admin listener without one): keep adminToken.create=true (the chart generates a token Secret), set adminToken.existingSecret, or set config.admin.token (e.g. \"${MY_TOKEN}\" from credentials.existingSecret)" -}}
{{- end -}}
{{- $_ := set $cfg "admin" $admin -}}
{{- $store := deepCopy (default (dict) (get $cfg "store")) -}}
{{- if .Values.redis.existingSecret -}}
{{- $_ := set $store "url" "${REDIS_URL}" -}}
{{- else if .Values.redis.url -}}
{{- $_ := set $store "url" .Values.redis.url -}}
{{- end -}}
{{- $_ := set $cfg "store" $store -}}
{{- if not (get $cfg "backends") -}}
{{- $_ := set $cfg "backends" (dict "csms" (dict "url" "wss://csms.example.invalid/ocpp" "ocpp" "1.6")) -}}
{{- end -}}
{{- $routes := default (list) (get $cfg "routes") -}}
{{- if not $routes -}}
{{- fail "config.routes must list at least one {match, primary}" -}}
{{- end -}}
{{- range $i, $r := $routes -}}
{{- if not (hasKey $cfg.backends (toString $r.primary)) -}}
{{- fail (printf "config.routes[%d].primary: unknown backend %q (config.backends defines: %s)" $i (toString $r.primary) (keys $cfg.backends | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- $workers := int .Values.workers -}}
{{- if lt $workers 1 -}}
{{- fail "workers must be >= 1" -}}
{{- end -}}
{{- if and (gt $workers 1) (hasPrefix "memory:" (toString (default "memory://" (get $store "url")))) -}}
{{- fail "workers > 1 needs a Redis store (redis.url or redis.existingSecret): worker processes cannot share memory://" -}}
{{- end -}}
{{- $_ := set $cfg "workers" $workers -}}
{{- $session := deepCopy (default (dict) (get $cfg "session")) -}}
{{- if not (hasKey $session "drain_window_s") -}}
{{- $_ := set $session "drain_window_s" (int .Values.shutdown.drainWindowSeconds) -}}
{{- end -}}
{{- $_ := set $cfg "session" $session -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The store URL the pods will use (for NOTES and the single-replica check). */}}
{{- define "ocpp-gateway.storeUrl" -}}
{{- if .Values.redis.existingSecret -}}
${REDIS_URL} (Secret {{ .Values.redis.existingSecret }})
{{- else if .Values.redis.url -}}
{{ .Values.redis.url }}
{{- else -}}
{{ (default (dict) .Values.config.store).url | default "memory://" }}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds = preStop sleep + shutdown_grace_s + drain window + margin. */}}
{{- define "ocpp-gateway.terminationGracePeriod" -}}
{{- $session := default (dict) .Values.config.session -}}
{{- $grace := ceil (float64 (default 10 $session.shutdown_grace_s)) -}}
{{- $window := ceil (float64 (ternary $session.drain_window_s .Values.shutdown.drainWindowSeconds (hasKey $session "drain_window_s"))) -}}
{{- add (int .Values.shutdown.preStopSleepSeconds) (int $grace) (int $window) (int .Values.shutdown.marginSeconds) -}}
{{- end -}}
