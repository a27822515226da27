{{/*
LDAP / Active Directory login (docs/ldap.md): the API's variables, and the service account's
password (from an existing Secret) and the directory's CA (from a ConfigMap or Secret) mounted
as files, since the API reads the password only from a file.
*/}}
{{- define "conclave.ldapEnv" -}}
{{- with .Values.auth.ldap }}
{{- if .url }}
{{- if not (or (hasPrefix "ldaps://" .url) (and (hasPrefix "ldap://" .url) .startTls)) }}
{{- fail "auth.ldap.url must be ldaps://HOST[:PORT], or ldap://HOST[:PORT] with auth.ldap.startTls=true: passwords must not cross the network in clear" }}
{{- end }}
{{- if not .userBase }}
{{- fail "auth.ldap.userBase is required with auth.ldap.url (e.g. ou=people,dc=example,dc=org)" }}
{{- end }}
{{- if and .bindDn (not .bindPasswordSecret) }}
{{- fail "auth.ldap.bindDn needs auth.ldap.bindPasswordSecret: an existing Secret with the service account's password" }}
{{- end }}
{{- if and .ca.configMap .ca.secret }}
{{- fail "auth.ldap.ca: name a ConfigMap or a Secret, not both" }}
{{- end }}
- name: CONCLAVE_LDAP_URL
  value: {{ .url | quote }}
- name: CONCLAVE_LDAP_STARTTLS
  value: {{ .startTls | quote }}
{{- if or .ca.configMap .ca.secret }}
- name: CONCLAVE_LDAP_CA_FILE
  value: /etc/conclave/ldap-ca/ca.pem
{{- end }}
{{- with .bindDn }}
- name: CONCLAVE_LDAP_BIND_DN
  value: {{ . | quote }}
- name: CONCLAVE_LDAP_BIND_PASSWORD_FILE
  value: /etc/conclave/ldap-bind/password
{{- end }}
- name: CONCLAVE_LDAP_USER_BASE
  value: {{ .userBase | quote }}
- name: CONCLAVE_LDAP_USER_FILTER
  value: {{ .userFilter | quote }}
- name: CONCLAVE_LDAP_NAME_ATTRIBUTE
  value: {{ .nameAttribute | quote }}
- name: CONCLAVE_LDAP_MAIL_ATTRIBUTE
  value: {{ .mailAttribute | quote }}
{{- with .timeZoneAttribute }}
- name: CONCLAVE_LDAP_TIME_ZONE_ATTRIBUTE
  value: {{ . | quote }}
{{- end }}
- name: CONCLAVE_LDAP_MEMBER_OF_ATTRIBUTE
  value: {{ .memberOfAttribute | default "none" | quote }}
{{- with .groupBase }}
- name: CONCLAVE_LDAP_GROUP_BASE
  value: {{ . | quote }}
{{- end }}
- name: CONCLAVE_LDAP_GROUP_FILTER
  value: {{ .groupFilter | quote }}
{{- with .groups.admin }}
- name: CONCLAVE_LDAP_ADMIN_GROUPS
  value: {{ join ";" . | quote }}
{{- end }}
{{- with .groups.moderatorPlus }}
- name: CONCLAVE_LDAP_MODERATOR_PLUS_GROUPS
  value: {{ join ";" . | quote }}
{{- end }}
{{- with .groups.moderator }}
- name: CONCLAVE_LDAP_MODERATOR_GROUPS
  value: {{ join ";" . | quote }}
{{- end }}
{{- with .groups.audience }}
- name: CONCLAVE_LDAP_AUDIENCE_GROUPS
  value: {{ join ";" . | quote }}
{{- end }}
- name: CONCLAVE_LDAP_DEFAULT_LEVEL
  value: {{ .defaultLevel | quote }}
{{- with .disabledFilter }}
- name: CONCLAVE_LDAP_DISABLED_FILTER
  value: {{ . | quote }}
{{- end }}
- name: CONCLAVE_LDAP_TIMEOUT_SECONDS
  value: {{ .timeoutSeconds | int | quote }}
{{- end }}
{{- end }}
{{- /* CONCLAVE_DIRECTORY_CHECK_MINUTES comes with conclave.authEnv. */}}
{{- end }}

{{- define "conclave.ldapVolumeMounts" -}}
{{- with .Values.auth.ldap }}
{{- if .url }}
{{- if .bindDn }}
- name: ldap-bind
  mountPath: /etc/conclave/ldap-bind
  readOnly: true
{{- end }}
{{- if or .ca.configMap .ca.secret }}
- name: ldap-ca
  mountPath: /etc/conclave/ldap-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "conclave.ldapVolumes" -}}
{{- with .Values.auth.ldap }}
{{- if .url }}
{{- if .bindDn }}
- name: ldap-bind
  secret:
    secretName: {{ .bindPasswordSecret }}
    defaultMode: 0440
    items:
      - key: {{ .bindPasswordSecretKey }}
        path: password
{{- end }}
{{- if .ca.configMap }}
- name: ldap-ca
  configMap:
    name: {{ .ca.configMap }}
    items:
      - key: {{ .ca.key }}
        path: ca.pem
{{- else if .ca.secret }}
- name: ldap-ca
  secret:
    secretName: {{ .ca.secret }}
    defaultMode: 0440
    items:
      - key: {{ .ca.key }}
        path: ca.pem
{{- end }}
{{- end }}
{{- end }}
{{- end }}
