{{/*
Names, labels and the pieces every component's pod shares. Component templates call these with
(dict "ctx" $ "component" "<coordinator|worker|router|...>").
*/}}

{{/* The chart name, for app.kubernetes.io/name. */}}
{{- define "moe-cluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "moe-cluster.fullname" -}}
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

{{/*
Name of one component's objects, e.g. moe-moe-cluster-router. The prefix is cut to 38 characters so the
longest names stay valid: "<prefix>-coordinator-headless" within 63 (a Service), "<prefix>-coordinator"
within 52 (a StatefulSet, whose pods' controller-revision-hash label adds 11 more).
*/}}
{{- define "moe-cluster.componentName" -}}
{{- printf "%s-%s" (include "moe-cluster.fullname" .ctx | trunc 38 | trimSuffix "-") .component -}}
{{- end -}}

{{/* Chart name and version, for helm.sh/chart. */}}
{{- define "moe-cluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a component's pods; never change them on upgrade (selectors are immutable). */}}
{{- define "moe-cluster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moe-cluster.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels that select every pod of the release (the NetworkPolicy's peers). */}}
{{- define "moe-cluster.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "moe-cluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The standard labels on every object. */}}
{{- define "moe-cluster.labels" -}}
helm.sh/chart: {{ include "moe-cluster.chart" .ctx }}
{{ include "moe-cluster.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: moe-cluster
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "moe-cluster.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Hazelcast cluster name (--cluster-name). */}}
{{- define "moe-cluster.clusterName" -}}
{{- default (include "moe-cluster.fullname" .) .Values.clusterName -}}
{{- end -}}

{{/* The coordinators' ClusterIP Service with the Control API port: what workers and routers pass as --coordinators. */}}
{{- define "moe-cluster.coordinatorsAddress" -}}
{{- printf "%s:%d" (include "moe-cluster.componentName" (dict "ctx" . "component" "coordinator")) (int .Values.coordinator.ports.control) -}}
{{- end -}}

{{/* Fully qualified name of the coordinators' headless Service, resolved by Hazelcast's DNS discovery. */}}
{{- define "moe-cluster.coordinatorHeadlessFqdn" -}}
{{- printf "%s-headless.%s.svc.%s" (include "moe-cluster.componentName" (dict "ctx" . "component" "coordinator")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
Checks across values that would otherwise render a broken cluster; each failure names the value to fix.
(values.schema.json checks single values: keys, types, ranges.) Included by every workload template, so
`helm template` and `helm install` stop before applying anything.
*/}}
{{- define "moe-cluster.validate" -}}
{{- $backends := list "cpu" "cuda" "auto" -}}
{{- if not (has .Values.workers.backend $backends) -}}
{{- fail (printf "workers.backend must be one of cpu, cuda or auto, got %q" (toString .Values.workers.backend)) -}}
{{- end -}}
{{- if and .Values.model.existingClaim .Values.model.hostPath -}}
{{- fail "set at most one of model.existingClaim and model.hostPath" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt" -}}
{{- end -}}
{{- if not (has .Values.tls.workerCertificates.source (list "secret" "csi")) -}}
{{- fail (printf "tls.workerCertificates.source must be secret or csi, got %q" (toString .Values.tls.workerCertificates.source)) -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.tls.workerCertificates.source "csi") (not .Values.tls.workerCertificates.issuerName) -}}
{{- fail "tls.workerCertificates.source=csi needs tls.workerCertificates.issuerName: the cert-manager issuer that signs each worker's certificate (with the CA in tls.secretName's ca.crt)" -}}
{{- end -}}
{{- if gt (int .Values.coordinator.minReplicas) (int .Values.workers.replicas) -}}
{{- fail (printf "coordinator.minReplicas (%d) cannot exceed workers.replicas (%d): every copy of an expert needs its own worker" (int .Values.coordinator.minReplicas) (int .Values.workers.replicas)) -}}
{{- end -}}
{{- if le (int .Values.workers.terminationGracePeriodSeconds) (int .Values.workers.drainTimeoutSeconds) -}}
{{- fail "workers.terminationGracePeriodSeconds must exceed workers.drainTimeoutSeconds, or Kubernetes kills a worker before it has drained" -}}
{{- end -}}
{{- if and .Values.security.adminReadToken (not .Values.security.adminTokenSecret) -}}
{{- fail "security.adminReadToken needs security.adminTokenSecret: a read-only token without a write token would leave no one able to drain or rebalance" -}}
{{- end -}}
{{- if and .Values.security.allowedClients (not .Values.tls.enabled) -}}
{{- fail "security.allowedClients needs tls.enabled: without client certificates workers would refuse every router" -}}
{{- end -}}
{{- if le (int .Values.router.terminationGracePeriodSeconds) (int .Values.router.shutdownGraceSeconds) -}}
{{- fail "router.terminationGracePeriodSeconds must exceed router.shutdownGraceSeconds, or Kubernetes kills a router with calls in flight" -}}
{{- end -}}
{{- end -}}

{{/* --model or --arch: the mounted model, or the built-in tiny one. */}}
{{- define "moe-cluster.modelArgs" -}}
{{- if or .Values.model.existingClaim .Values.model.hostPath -}}
- --model
- {{ trimSuffix "/" (printf "/models/%s" .Values.model.dir) | quote }}
{{- else -}}
- --arch
- {{ .Values.model.arch | quote }}
{{- end -}}
{{- end -}}

{{/* --tls-cert/--tls-key/--tls-ca when TLS is on; empty otherwise. */}}
{{- define "moe-cluster.tlsArgs" -}}
{{- if .Values.tls.enabled -}}
- --tls-cert
- /etc/moe/tls/tls.crt
- --tls-key
- /etc/moe/tls/tls.key
- --tls-ca
- /etc/moe/tls/ca.crt
{{- end -}}
{{- end -}}

{{/* Environment every container gets; POD_IP and POD_NAME are also used in args as $(POD_IP), $(POD_NAME). */}}
{{- define "moe-cluster.env" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# the root file system is read-only: the built-in model is generated under /tmp
- name: XDG_CACHE_HOME
  value: /tmp/cache
# text, or json: one JSON object per log line for pipelines that parse fields
- name: MOE_LOG_FORMAT
  value: {{ .ctx.Values.logFormat | quote }}
{{- with .component.javaOptions }}
- name: JAVA_TOOL_OPTIONS
  value: {{ . | quote }}
{{- end }}
{{- with .component.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* gRPC probes on the health port: startup and liveness ask "liveness", readiness asks "" (ready to serve). */}}
{{- define "moe-cluster.probes" -}}
{{- $p := .ctx.Values.probes -}}
startupProbe:
  grpc:
    port: {{ .port }}
    service: liveness
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ .port }}
    service: ""
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  grpc:
    port: {{ .port }}
    service: liveness
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end -}}

{{/* Mounts every container gets: /tmp, the model, the TLS Secret. */}}
{{- define "moe-cluster.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if or .Values.model.existingClaim .Values.model.hostPath }}
- name: model
  mountPath: /models
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/moe/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volumes behind moe-cluster.volumeMounts, for (dict "root" $ "worker" true|false). */}}
{{- define "moe-cluster.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ $v.tmpSizeLimit }}
{{- if $v.model.existingClaim }}
- name: model
  persistentVolumeClaim:
    claimName: {{ $v.model.existingClaim }}
    readOnly: true
{{- else if $v.model.hostPath }}
- name: model
  hostPath:
    path: {{ $v.model.hostPath }}
    type: Directory
{{- end }}
{{- if $v.tls.enabled }}
{{- include "moe-cluster.tlsVolume" . }}
{{- end }}
{{- end -}}

{{/*
The tls volume: the shared Secret, or for a worker under tls.workerCertificates.source=csi a certificate
of its own from cert-manager's csi-driver, naming the pod's DNS name (the address it advertises, which
coordinators bind its registration to) and renewed in place (components reload their files).
*/}}
{{- define "moe-cluster.tlsVolume" -}}
{{- $v := .root.Values }}
{{- if and .worker (eq $v.tls.workerCertificates.source "csi") }}
- name: tls
  csi:
    driver: csi.cert-manager.io
    readOnly: true
    volumeAttributes:
      csi.cert-manager.io/issuer-name: {{ $v.tls.workerCertificates.issuerName | quote }}
      csi.cert-manager.io/issuer-kind: {{ $v.tls.workerCertificates.issuerKind | quote }}
      csi.cert-manager.io/issuer-group: {{ $v.tls.workerCertificates.issuerGroup | quote }}
      csi.cert-manager.io/common-name: "${POD_NAME}"
      csi.cert-manager.io/dns-names: "${POD_NAME}.{{ include "moe-cluster.componentName" (dict "ctx" .root "component" "worker") }}.{{ .root.Release.Namespace }}.svc.{{ $v.clusterDomain }}"
      csi.cert-manager.io/key-encoding: PKCS8
      csi.cert-manager.io/key-usages: "digital signature,key encipherment,server auth,client auth"
      csi.cert-manager.io/duration: {{ $v.tls.workerCertificates.duration | quote }}
      csi.cert-manager.io/fs-group: {{ $v.podSecurityContext.fsGroup | default 65532 | quote }}
{{- else }}
- name: tls
  secret:
    secretName: {{ $v.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* Pod-level settings every component shares. */}}
{{- define "moe-cluster.podCommon" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{ end -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/*
Flags for the security Secrets (values "security"), by component: the signing key (coordinators) or its
public half (routers, workers), the Admin API tokens (coordinators), the Control API role tokens (both
to coordinators, its own to a worker or router), the data-plane token (routers, workers) and the
data-plane allow-list (workers). Call with (dict "ctx" $ "component" NAME).
*/}}
{{- define "moe-cluster.securityArgs" -}}
{{- $s := .ctx.Values.security -}}
{{- if $s.placementSigningSecret }}
{{- if eq .component "coordinator" }}
- --signing-key
- /etc/moe/signing/signing.pem
{{- else }}
- --placement-public-key
- /etc/moe/signing/public.pem
{{- end }}
{{- end }}
{{- if and $s.adminTokenSecret (eq .component "coordinator") }}
- --admin-token-file
- /etc/moe/admin/write
{{- if $s.adminReadToken }}
- --admin-read-token-file
- /etc/moe/admin/read
{{- end }}
{{- end }}
{{- if $s.controlTokenSecret }}
{{- if eq .component "coordinator" }}
- --worker-token-file
- /etc/moe/control/worker
- --router-token-file
- /etc/moe/control/router
{{- else }}
- --control-token-file
- /etc/moe/control/{{ .component }}
{{- end }}
{{- end }}
{{- if and $s.dataPlaneTokenSecret (ne .component "coordinator") }}
- --data-plane-token-file
- /etc/moe/data-plane/token
{{- end }}
{{- if and $s.allowedClients (eq .component "worker") }}
- --allowed-clients
- {{ join "," $s.allowedClients | quote }}
{{- end }}
{{- end -}}

{{/* The mounts behind moe-cluster.securityArgs. */}}
{{- define "moe-cluster.securityMounts" -}}
{{- $s := .ctx.Values.security -}}
{{- if $s.placementSigningSecret }}
- name: signing
  mountPath: /etc/moe/signing
  readOnly: true
{{- end }}
{{- if and $s.adminTokenSecret (eq .component "coordinator") }}
- name: admin-tokens
  mountPath: /etc/moe/admin
  readOnly: true
{{- end }}
{{- if $s.controlTokenSecret }}
- name: control-tokens
  mountPath: /etc/moe/control
  readOnly: true
{{- end }}
{{- if and $s.dataPlaneTokenSecret (ne .component "coordinator") }}
- name: data-plane-token
  mountPath: /etc/moe/data-plane
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volumes behind moe-cluster.securityMounts: only the coordinators get the private signing key. */}}
{{- define "moe-cluster.securityVolumes" -}}
{{- $s := .ctx.Values.security -}}
{{- if $s.placementSigningSecret }}
- name: signing
  secret:
    secretName: {{ $s.placementSigningSecret }}
    defaultMode: 0440
    items:
      {{- if eq .component "coordinator" }}
      - key: signing.pem
        path: signing.pem
      {{- else }}
      - key: public.pem
        path: public.pem
      {{- end }}
{{- end }}
{{- if and $s.adminTokenSecret (eq .component "coordinator") }}
- name: admin-tokens
  secret:
    secretName: {{ $s.adminTokenSecret }}
    defaultMode: 0440
    items:
      - key: write
        path: write
      {{- if $s.adminReadToken }}
      - key: read
        path: read
      {{- end }}
{{- end }}
{{- if $s.controlTokenSecret }}
- name: control-tokens
  secret:
    secretName: {{ $s.controlTokenSecret }}
    defaultMode: 0440
    items:
      {{- if or (eq .component "coordinator") (eq .component "worker") }}
      - key: worker
        path: worker
      {{- end }}
      {{- if or (eq .component "coordinator") (eq .component "router") }}
      - key: router
        path: router
      {{- end }}
{{- end }}
{{- if and $s.dataPlaneTokenSecret (ne .component "coordinator") }}
- name: data-plane-token
  secret:
    secretName: {{ $s.dataPlaneTokenSecret }}
    defaultMode: 0440
    items:
      - key: token
        path: token
{{- end }}
{{- end -}}
