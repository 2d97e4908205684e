# Rendered by orascache. Do not edit: change the source and run `make synth`.
{{/* A string as the construct's YAML emitter (PyYAML) writes it: plain when that reads
back as the same string, else double-quoted. Default values print as dist/install/. */}}
{{- define "oras-cache.str" -}}
{{- $s := toString . -}}
{{- $plain := regexMatch "^[A-Za-z0-9/$(][-A-Za-z0-9._/:@$()]*$" $s -}}
{{- $other := regexMatch "^([0-9][-0-9._:]*|(?i:y|n|yes|no|on|off|true|false|null|~))$" $s -}}
{{- if and $plain (not $other) -}}
{{ $s }}
{{- else -}}
{{ $s | quote }}
{{- end -}}
{{- end -}}

{{/* REPOSITORY@DIGEST when a digest is given, else REPOSITORY:TAG. */}}
{{- define "oras-cache.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "oras-cache.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
