{{/*
Names, labels and the pieces every workload shares. Nothing here is rendered on its own.
*/}}

{{- define "conclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; objects are "<fullname>-<component>". Kept short enough that
"<fullname>-sfu-<ordinal>" stays a valid label value and DNS label. */}}
{{- define "conclave.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "conclave.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "conclave.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "conclave.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. Call with (dict "ctx" $ "component" "api"). */}}
{{- define "conclave.labels" -}}
helm.sh/chart: {{ include "conclave.chart" .ctx }}
{{ include "conclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: conclave
{{- end }}

{{/* Selector labels of one component. The SFU's component label is what the operator selects
SFU pods by (--sfu-selector, default app.kubernetes.io/component=sfu). */}}
{{- define "conclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conclave.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conclave.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "conclave.apiName" -}}{{ include "conclave.fullname" . }}-api{{- end }}
{{- define "conclave.operatorName" -}}{{ include "conclave.fullname" . }}-operator{{- end }}
{{- define "conclave.sfuName" -}}{{ include "conclave.fullname" . }}-sfu{{- end }}
{{- define "conclave.sipName" -}}{{ include "conclave.fullname" . }}-sip{{- end }}
{{- define "conclave.postgresqlName" -}}{{ include "conclave.fullname" . }}-postgresql{{- end }}

{{/* The Secret holding the join-token signing key, and its key. */}}
{{- define "conclave.joinTokenSecretName" -}}
{{- default (printf "%s-join-token" (include "conclave.fullname" .)) .Values.joinToken.existingSecret }}
{{- end }}

{{/* The Secret holding the database URL, and its key. */}}
{{- define "conclave.databaseSecretName" -}}
{{- if or .Values.postgresql.enabled .Values.database.url }}
{{- printf "%s-database" (include "conclave.fullname" .) }}
{{- else }}
{{- required "a database is needed: set database.existingSecret (a Secret whose key database.existingSecretKey holds a postgres:// URL), database.url, or postgresql.enabled=true to try it out" .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{/* Whether the chart makes the database Secret itself. */}}
{{- define "conclave.databaseSecretOwned" -}}
{{- if or .Values.postgresql.enabled .Values.database.url }}true{{ end }}
{{- end }}

{{- define "conclave.databaseSecretKey" -}}
{{- if include "conclave.databaseSecretOwned" . }}url{{ else }}{{ .Values.database.existingSecretKey }}{{ end }}
{{- end }}

{{- define "conclave.smtpSecretName" -}}
{{- default (printf "%s-smtp" (include "conclave.fullname" .)) .Values.smtp.existingSecret }}
{{- end }}

{{/* Whether SMTP credentials are configured (from values or an existing Secret). */}}
{{- define "conclave.smtpCredentials" -}}
{{- if or .Values.smtp.existingSecret .Values.smtp.username }}true{{ end }}
{{- end }}

{{- define "conclave.adminSecretName" -}}
{{- default (printf "%s-admin" (include "conclave.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{/* The API's in-cluster URL, where SFU pods post their room reports. */}}
{{- define "conclave.apiInternalUrl" -}}
{{- printf "http://%s-internal.%s.svc:%d" (include "conclave.apiName" .) .Release.Namespace (int .Values.api.internalPort) }}
{{- end }}

{{/* The API Service's in-cluster URL, where the SIP gateway checks meeting IDs (POST /api/v1/join). */}}
{{- define "conclave.apiUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "conclave.apiName" .) .Release.Namespace (int .Values.api.service.port) }}
{{- end }}

{{/* The public base URL of the portal. */}}
{{- define "conclave.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "conclave.apiName" .) .Release.Namespace (int .Values.api.service.port) }}
{{- end }}
{{- end }}

{{/* Whether clients reach the SFU pods' signaling through the API (sfu.signaling: viaApi). */}}
{{- define "conclave.signalingViaApi" -}}
{{- if eq .Values.sfu.signaling "viaApi" }}true{{ end }}
{{- end }}

{{/* The SFU endpoint template the operator fills in per pod ({pod}, {namespace}, {podIP}). */}}
{{- define "conclave.sfuEndpoint" -}}
{{- if include "conclave.signalingViaApi" . }}
{{- if .Values.sfu.ingress.enabled }}
{{- fail "sfu.ingress (one public host per SFU pod) is for sfu.signaling=direct; with sfu.signaling=viaApi clients reach every pod through ingress.host at /rtc/<pod>: turn sfu.ingress off, or set sfu.signaling=direct" }}
{{- end }}
{{- /* The in-cluster URL the API relays to. */}}
{{- $endpoint := default (printf "ws://{podIP}:%d/rtc" (int .Values.sfu.port)) .Values.sfu.endpoint }}
{{- if not (hasPrefix "ws://" $endpoint) }}
{{- fail (printf "sfu.endpoint %q: with sfu.signaling=viaApi it is the in-cluster URL the API relays to, a ws:// URL such as ws://{podIP}:%d/rtc (or set sfu.signaling=direct)" $endpoint (int .Values.sfu.port)) }}
{{- end }}
{{- $endpoint }}
{{- else if .Values.sfu.endpoint }}
{{- .Values.sfu.endpoint }}
{{- else if .Values.sfu.ingress.enabled }}
{{- printf "%s://{pod}.%s/rtc" (ternary "wss" "ws" .Values.sfu.ingress.tls.enabled) (required "sfu.ingress.domain is needed when sfu.ingress.enabled" .Values.sfu.ingress.domain) }}
{{- else }}
{{- /* Straight to the pod (with hostNetwork its IP is the node's): plain ws, for a LAN trial;
browsers refuse it from an https portal. */}}
{{- printf "ws://{podIP}:%d/rtc" (int .Values.sfu.port) }}
{{- end }}
{{- end }}

{{/*
The SFU's media ports. sfu.udpPorts is FIRST-LAST; with exposure=service and a NodePort
Service, every pod gets a slice of its own (nodePorts are unique in the cluster), pod i the
i-th of sfu.replicas equal slices. "conclave.sfuPortsByPod" is then "POD=FIRST-LAST,…" (the
conclave.dev/udp-ports annotation and --sfu-udp-ports-by-pod); empty otherwise.
*/}}
{{- define "conclave.sfuNodePorts" -}}
{{- if and (eq .Values.sfu.exposure "service") (eq .Values.sfu.service.type "NodePort") }}true{{ end }}
{{- end }}

{{- define "conclave.sfuPortsByPod" -}}
{{- if include "conclave.sfuNodePorts" . }}
{{- $ports := regexSplit "-" .Values.sfu.udpPorts -1 }}
{{- $first := index $ports 0 | int }}
{{- $last := index $ports 1 | int }}
{{- $replicas := int .Values.sfu.replicas }}
{{- $slice := div (add (sub $last $first) 1) $replicas | int }}
{{- $name := include "conclave.sfuName" . }}
{{- $entries := list }}
{{- range $i := until $replicas }}
{{- $from := add $first (mul $i $slice) }}
{{- $entries = append $entries (printf "%s-%d=%d-%d" $name $i $from (sub (add $from $slice) 1)) }}
{{- end }}
{{- join "," $entries }}
{{- end }}
{{- end }}

{{/* With LoadBalancer media Services each pod announces its own balancer's address. */}}
{{- define "conclave.sfuLoadBalancerIPsCheck" -}}
{{- $lbIPs := .Values.sfu.service.loadBalancerIPs }}
{{- if and (eq .Values.sfu.exposure "service") (eq .Values.sfu.service.type "LoadBalancer") (lt (len $lbIPs) (int .Values.sfu.replicas)) }}
{{- fail (printf "sfu.service.loadBalancerIPs names %d addresses for %d replicas: with sfu.service.type=LoadBalancer each pod announces its own load balancer's address, so give one per replica (sfu-0 first)" (len $lbIPs) (int .Values.sfu.replicas)) }}
{{- end }}
{{- end }}

{{/* Pod security context shared by Conclave's pods. */}}
{{- define "conclave.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context: nothing more than a process needs. */}}
{{- define "conclave.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A random secret, or the one already stored in the Secret (kept across upgrades). Call with
(dict "ctx" $ "name" "<secret>" "key" "<key>" "length" 48). `helm template` (no cluster) always
generates. */}}
{{- define "conclave.keepOrGenerate" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}

{{/* The API's image: the `media` target of the Dockerfile (the runtime plus ffmpeg and
poppler, which compose recordings and turn presentations into pages), tagged <tag>-media. */}}
{{- define "conclave.apiImage" -}}
{{- printf "%s:%s-media" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The file store of presentations and recordings, for the API and SFU containers. */}}
{{- define "conclave.storageEnv" -}}
{{- with .Values.storage.s3 }}
{{- if .bucket }}
- name: CONCLAVE_S3_BUCKET
  value: {{ .bucket | quote }}
- name: CONCLAVE_S3_REGION
  value: {{ .region | quote }}
{{- with .endpoint }}
- name: CONCLAVE_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: CONCLAVE_S3_ALLOW_HTTP
  value: {{ .allowHttp | quote }}
- name: CONCLAVE_S3_VIRTUAL_HOSTED
  value: {{ .virtualHosted | quote }}
{{- with .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Company sign-on for the API container: the directory check and OpenID Connect. */}}
{{- define "conclave.authEnv" -}}
- name: CONCLAVE_DIRECTORY_CHECK_MINUTES
  value: {{ .Values.auth.directoryCheckMinutes | int | quote }}
{{- with .Values.auth.oidc }}
{{- if .issuer }}
- name: CONCLAVE_OIDC_ISSUER
  value: {{ .issuer | quote }}
- name: CONCLAVE_OIDC_CLIENT_ID
  value: {{ required "auth.oidc.clientId is needed with auth.oidc.issuer" .clientId | quote }}
- name: CONCLAVE_OIDC_CLIENT_SECRET_FILE
  value: /etc/conclave/oidc/client-secret
- name: CONCLAVE_OIDC_NAME
  value: {{ .name | quote }}
- name: CONCLAVE_OIDC_SCOPES
  value: {{ .scopes | quote }}
- name: CONCLAVE_OIDC_GROUPS_CLAIM
  value: {{ .groupsClaim | quote }}
- name: CONCLAVE_OIDC_LOGIN_CLAIM
  value: {{ .loginClaim | quote }}
- name: CONCLAVE_OIDC_ADMIN_GROUPS
  value: {{ join "," .adminGroups | quote }}
- name: CONCLAVE_OIDC_MODERATOR_PLUS_GROUPS
  value: {{ join "," .moderatorPlusGroups | quote }}
- name: CONCLAVE_OIDC_MODERATOR_GROUPS
  value: {{ join "," .moderatorGroups | quote }}
- name: CONCLAVE_OIDC_AUDIENCE_GROUPS
  value: {{ join "," .audienceGroups | quote }}
- name: CONCLAVE_OIDC_DEFAULT_LEVEL
  value: {{ .defaultLevel | quote }}
- name: CONCLAVE_OIDC_PROVIDER_LOGOUT
  value: {{ .providerLogout | quote }}
- name: CONCLAVE_OIDC_CLOCK_SKEW_SECONDS
  value: {{ .clockSkewSeconds | int | quote }}
{{- if .caConfigMap }}
- name: CONCLAVE_OIDC_CA_FILE
  value: /etc/conclave/oidc-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}
{{- end }}
