{{/*
Named templates of the pgsidecar chart. The ones marked "public" are meant to be included from your
own chart's pod templates (pgsidecar as a dependency), with a context of the form

  (dict "Values" .Values.pgsidecar "Release" .Release)

so they use only .Values and .Release, never .Chart or .Files (which would be your chart's).
*/}}

{{/* Object names: <release>-pgsidecar, or the release name when it already says pgsidecar. */}}
{{- define "pgsidecar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "pgsidecar" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pgsidecar" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pgsidecar.configName" -}}
{{- printf "%s-config" (include "pgsidecar.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "pgsidecar.selectorLabels" -}}
app.kubernetes.io/name: pgsidecar
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgsidecar.labels" -}}
{{ include "pgsidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The config holds a password (in upstream.url or config.users): it goes into a Secret. */}}
{{- define "pgsidecar.configIsSecret" -}}
{{- $secret := .Values.configAsSecret -}}
{{- if .Values.upstream.url -}}
{{- if contains ":" ((urlParse .Values.upstream.url).userinfo | default "") -}}{{- $secret = true -}}{{- end -}}
{{- end -}}
{{- range ((.Values.config | default dict).users | default list) -}}
{{- if hasKey . "password" -}}{{- $secret = true -}}{{- end -}}
{{- end -}}
{{- if $secret -}}true{{- end -}}
{{- end -}}

{{/* Where the upstream password Secret and user Secrets are mounted (outside /etc/pgsidecar). */}}
{{- define "pgsidecar.secretsDir" -}}/etc/pgsidecar-secrets{{- end -}}

{{/*
The sidecar's YAML config. Only what the values set, plus what the chart must decide (listen
addresses, password files); everything else keeps the sidecar's own defaults.
*/}}
{{- define "pgsidecar.config" -}}
{{- $v := .Values -}}
{{- $u := $v.upstream -}}
{{- $conf := $v.config | default dict -}}
{{- $cfg := dict -}}
{{- $user := $u.user -}}
{{- if and $u.url $u.host -}}
{{- fail "pgsidecar: set upstream.url or upstream.host, not both" -}}
{{- end -}}
{{- if $u.url -}}
{{- $_ := set $cfg "upstream" $u.url -}}
{{- if not $user -}}{{- $user = (split ":" ((urlParse $u.url).userinfo | default ""))._0 -}}{{- end -}}
{{- else if $u.host -}}
{{- if not (and $u.user $u.database) -}}
{{- fail "pgsidecar: upstream.host needs upstream.user and upstream.database" -}}
{{- end -}}
{{- $url := printf "postgres://%s@%s" (urlquery $u.user) $u.host -}}
{{- if $u.port -}}{{- $url = printf "%s:%d" $url (int $u.port) -}}{{- end -}}
{{- $url = printf "%s/%s" $url (urlquery $u.database) -}}
{{- if $u.sslmode -}}{{- $url = printf "%s?sslmode=%s" $url $u.sslmode -}}{{- end -}}
{{- $_ := set $cfg "upstream" $url -}}
{{- end -}}
{{- $dir := include "pgsidecar.secretsDir" . -}}
{{- $users := list -}}
{{- if $u.existingSecret.name -}}
{{- if not $user -}}
{{- fail "pgsidecar: upstream.existingSecret needs the user name: set upstream.user or put it in upstream.url" -}}
{{- end -}}
{{- $users = append $users (dict "name" $user "password_file" (printf "%s/upstream/password" $dir)) -}}
{{- end -}}
{{- range $i, $x := $v.users -}}
{{- $entry := dict "name" $x.name "password_file" (printf "%s/user-%d/password" $dir $i) -}}
{{- if $x.admin -}}{{- $_ := set $entry "admin" true -}}{{- end -}}
{{- $users = append $users $entry -}}
{{- end -}}
{{- $users = concat $users ($conf.users | default list) -}}
{{- if $users -}}{{- $_ := set $cfg "users" $users -}}{{- end -}}
{{- $bind := $v.bindAddress -}}
{{- if contains ":" $bind -}}{{- $bind = printf "[%s]" $bind -}}{{- end -}}
{{- if eq $v.mode "standalone" -}}
{{- $_ := set $cfg "listen" (printf "%s:%d" $bind (int $v.ports.postgres)) -}}
{{- else if ne (int $v.ports.postgres) 6432 -}}
{{- $_ := set $cfg "listen" (printf "127.0.0.1:%d" (int $v.ports.postgres)) -}}
{{- end -}}
{{- $_ := set $cfg "http_listen" (printf "%s:%d" $bind (int $v.ports.http)) -}}
{{- $delay := dict -}}
{{- if eq $v.mode "standalone" -}}
{{- $delay = dict "d" $v.standalone.minSigtermDelay -}}
{{- else if eq $v.sidecar.type "classic" -}}
{{- $delay = dict "d" $v.sidecar.classic.minSigtermDelay -}}
{{- end -}}
{{- $settings := dict
  "pool_mode" $v.pool.mode
  "pool_size" $v.pool.size
  "min_pool_size" $v.pool.minSize
  "query_wait_timeout" $v.pool.queryWaitTimeout
  "retry" $v.retry.policy
  "retry_max" $v.retry.max
  "retry_buffer_bytes" $v.retry.bufferBytes
  "shutdown_timeout" $v.shutdown.timeout
  "min_sigterm_delay" $delay.d
-}}
{{- range $k, $x := $settings -}}
{{- if not (kindIs "invalid" $x) -}}{{- $_ := set $cfg $k $x -}}{{- end -}}
{{- end -}}
{{- /* set, not mergeOverwrite: that would drop 0, false and "" (server_lifetime: 0 means unlimited). */ -}}
{{- range $k, $x := omit $conf "users" -}}
{{- $_ := set $cfg $k $x -}}
{{- end -}}
# pgsidecar config rendered by the Helm chart: only settings that differ from the sidecar's defaults.
{{ toYaml $cfg }}
{{- end -}}

{{/* public: pod annotations that roll the pods when the rendered config changes. */}}
{{- define "pgsidecar.podAnnotations" -}}
checksum/pgsidecar-config: {{ include "pgsidecar.config" . | sha256sum }}
{{- end -}}

{{/* public: a pod label that the chart's PodMonitor selects in sidecar mode. */}}
{{- define "pgsidecar.podLabels" -}}
pgsidecar/instance: {{ include "pgsidecar.fullname" . }}
{{- end -}}

{{/* public: the volumes the sidecar container mounts (list items). */}}
{{- define "pgsidecar.volumes" -}}
- name: pgsidecar-config
{{- if include "pgsidecar.configIsSecret" . }}
  secret:
    secretName: {{ include "pgsidecar.configName" . }}
{{- else }}
  configMap:
    name: {{ include "pgsidecar.configName" . }}
{{- end }}
{{- with .Values.upstream.existingSecret }}
{{- if .name }}
- name: pgsidecar-upstream-secret
  secret:
    secretName: {{ .name }}
    items:
      - key: {{ .key | default "password" }}
        path: password
{{- end }}
{{- end }}
{{- range $i, $x := .Values.users }}
- name: pgsidecar-user-{{ $i }}
  secret:
    secretName: {{ required (printf "pgsidecar: users[%d].existingSecret.name is required" $i) $x.existingSecret.name }}
    items:
      - key: {{ $x.existingSecret.key | default "password" }}
        path: password
{{- end }}
{{- end -}}

{{- define "pgsidecar.probe" -}}
{{- $p := .probe -}}
httpGet:
  path: {{ .path }}
  port: pgsidecar-http
{{- with omit $p "enabled" }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
public: the sidecar container (one list item). In sidecar mode with sidecar.type native it carries
restartPolicy: Always and belongs under initContainers; otherwise under containers.
*/}}
{{- define "pgsidecar.sidecar" -}}
{{- $v := .Values -}}
{{- $dir := include "pgsidecar.secretsDir" . -}}
- name: pgsidecar
  image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if and (eq $v.mode "sidecar") (eq $v.sidecar.type "native") }}
  restartPolicy: Always
  {{- end }}
  args: ["--config", "/etc/pgsidecar/pgsidecar.yaml"]
  {{- with $v.extraEnv }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: pgsidecar
      containerPort: {{ $v.ports.postgres }}
      protocol: TCP
    - name: pgsidecar-http
      containerPort: {{ $v.ports.http }}
      protocol: TCP
  {{- if $v.probes.startup.enabled }}
  startupProbe:
    {{- include "pgsidecar.probe" (dict "probe" $v.probes.startup "path" "/startup") | nindent 4 }}
  {{- end }}
  {{- if $v.probes.readiness.enabled }}
  readinessProbe:
    {{- include "pgsidecar.probe" (dict "probe" $v.probes.readiness "path" "/readyz") | nindent 4 }}
  {{- end }}
  {{- if $v.probes.liveness.enabled }}
  livenessProbe:
    {{- include "pgsidecar.probe" (dict "probe" $v.probes.liveness "path" "/livez") | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: pgsidecar-config
      mountPath: /etc/pgsidecar
      readOnly: true
    {{- if $v.upstream.existingSecret.name }}
    - name: pgsidecar-upstream-secret
      mountPath: {{ $dir }}/upstream
      readOnly: true
    {{- end }}
    {{- range $i, $x := $v.users }}
    - name: pgsidecar-user-{{ $i }}
      mountPath: {{ $dir }}/user-{{ $i }}
      readOnly: true
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
