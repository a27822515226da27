// Command render renders a Helm 3 chart the way `helm template` does, for the chart tests on
// machines without a helm binary.
//
// It uses what Helm itself is built from: Go's text/template with sprig's TxtFuncMap, plus
// Helm's own additions (include, tpl, required, fail, toYaml, fromYaml, fromYamlArray, toJson,
// fromJson, lookup, .Files, .Capabilities, .Release, .Chart, .Template). Values are merged from
// values.yaml, -f files and --set, and validated against values.schema.json with gojsonschema
// (the validator Helm 3 used up to 3.17). YAML goes through gopkg.in/yaml.v2 by way of JSON,
// as sigs.k8s.io/yaml does in Helm: YAML 1.1 scalars (`yes` is true), numbers from files become
// float64, toYaml leaves list items unindented under their key.
//
// Build offline (Debian golang-go, golang-github-masterminds-sprig-dev — which brings
// golang-gopkg-yaml.v2-dev —, golang-github-xeipuuv-gojsonschema-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render .
//
// Usage:
//
//	render [--name R] [--namespace N] [-f values.yaml]... [--set a.b=c]... [--api-versions G/V]...
//	       [--upgrade] [--include-crds] [--notes] CHART_DIR
//
// The manifests go to stdout as one YAML stream, each document headed by `# Source: …`;
// with --notes only NOTES.txt is rendered. Errors go to stderr with exit status 1, worded as
// Helm words them.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	chart       string
	name        string
	namespace   string
	valueFiles  multiFlag
	sets        multiFlag
	apiVersions multiFlag
	upgrade     bool
	includeCRDs bool
	notes       bool
	kubeVersion string
}

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err == nil {
		var out string
		out, err = render(opts)
		if err == nil {
			fmt.Print(out)
			return
		}
	}
	fmt.Fprintf(os.Stderr, "Error: %s\n", err)
	os.Exit(1)
}

func parseArgs(args []string) (options, error) {
	opts := options{name: "release-name", namespace: "default", kubeVersion: "v1.33.0"}
	value := func(i *int, flag string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("flag needs an argument: %s", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		var v string
		var err error
		if k, val, ok := strings.Cut(arg, "="); ok && strings.HasPrefix(k, "--") {
			arg, v = k, val
			args = append(args[:i+1], append([]string{v}, args[i+1:]...)...)
		}
		switch arg {
		case "--name":
			opts.name, err = value(&i, arg)
		case "--namespace", "-n":
			opts.namespace, err = value(&i, arg)
		case "-f", "--values":
			v, err = value(&i, arg)
			opts.valueFiles = append(opts.valueFiles, v)
		case "--set":
			v, err = value(&i, arg)
			opts.sets = append(opts.sets, v)
		case "--api-versions", "-a":
			v, err = value(&i, arg)
			opts.apiVersions = append(opts.apiVersions, v)
		case "--kube-version":
			opts.kubeVersion, err = value(&i, arg)
		case "--upgrade":
			opts.upgrade = true
		case "--include-crds":
			opts.includeCRDs = true
		case "--notes":
			opts.notes = true
		default:
			if strings.HasPrefix(arg, "-") || opts.chart != "" {
				return opts, fmt.Errorf("unknown argument %q", arg)
			}
			opts.chart = arg
		}
		if err != nil {
			return opts, err
		}
	}
	if opts.chart == "" {
		return opts, errors.New("no chart folder given")
	}
	return opts, nil
}

// --- values ----------------------------------------------------------------------------------

// toJSONish turns what yaml.v2 decoded into what Helm sees after sigs.k8s.io/yaml: maps with
// string keys, and every number a float64.
func toJSONish(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		for k, x := range t {
			t[k] = toJSONish(x)
		}
		return t
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, x := range t {
			m[fmt.Sprint(k)] = toJSONish(x)
		}
		return m
	case []interface{}:
		for i, x := range t {
			t[i] = toJSONish(x)
		}
		return t
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	default:
		return v
	}
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc interface{}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("cannot parse %s: %w", file, err)
	}
	m, ok := toJSONish(doc).(map[string]interface{})
	if doc != nil && !ok {
		return nil, fmt.Errorf("cannot parse %s: not a map of values", file)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// mergeInto copies src over dst, recursively for maps; a null in src deletes the key (Helm).
func mergeInto(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// parseSetValue types a --set value as Helm's strvals does: integers, booleans, null, strings.
func parseSetValue(s string) interface{} {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	// Like strvals: a leading zero keeps a number a string (0123 is not 123).
	if s == "0" || !strings.HasPrefix(s, "0") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
	}
	return s
}

var indexed = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// applySet applies one --set argument: `a.b=c,d.e[0]=f`, `list={x,y}`.
func applySet(values map[string]interface{}, arg string) error {
	for _, assignment := range splitTopLevel(arg) {
		key, raw, ok := strings.Cut(assignment, "=")
		if !ok {
			return fmt.Errorf("failed parsing --set data: key %q has no value", assignment)
		}
		var value interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			items := []interface{}{}
			for _, item := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(raw, "{"), "}"), ",") {
				if item != "" {
					items = append(items, parseSetValue(item))
				}
			}
			value = items
		} else {
			value = parseSetValue(raw)
		}
		parts := strings.Split(key, ".")
		node := values
		for i, part := range parts {
			last := i == len(parts)-1
			if m := indexed.FindStringSubmatch(part); m != nil {
				idx, _ := strconv.Atoi(m[2])
				list, _ := node[m[1]].([]interface{})
				for len(list) <= idx {
					list = append(list, nil)
				}
				if last {
					list[idx] = value
					node[m[1]] = list
					break
				}
				child, ok := list[idx].(map[string]interface{})
				if !ok {
					child = map[string]interface{}{}
					list[idx] = child
				}
				node[m[1]] = list
				node = child
				continue
			}
			if last {
				if value == nil {
					delete(node, part)
				} else {
					node[part] = value
				}
				break
			}
			child, ok := node[part].(map[string]interface{})
			if !ok {
				child = map[string]interface{}{}
				node[part] = child
			}
			node = child
		}
	}
	return nil
}

// splitTopLevel splits at commas outside `{…}`; `\,` is a literal comma.
func splitTopLevel(s string) []string {
	var parts []string
	var cur strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case c == '{':
			depth++
			cur.WriteByte(c)
		case c == '}':
			depth--
			cur.WriteByte(c)
		case c == ',' && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		parts = append(parts, cur.String())
	}
	return parts
}

func validateSchema(chartName, chartDir string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("cannot validate against values.schema.json: %w", err)
	}
	if result.Valid() {
		return nil
	}
	var b strings.Builder
	b.WriteString("values don't meet the specifications of the schema(s) in the following chart(s):\n")
	b.WriteString(chartName + ":\n")
	for _, e := range result.Errors() {
		b.WriteString(fmt.Sprintf("- %s\n", e))
	}
	return errors.New(b.String())
}

// --- Helm's objects ----------------------------------------------------------------------------

// Files is .Files: the chart's files outside templates/.
type Files map[string][]byte

// Get returns a file's content, or "" when absent.
func (f Files) Get(name string) string { return string(f[name]) }

// GetBytes returns a file's bytes.
func (f Files) GetBytes(name string) []byte { return f[name] }

// Glob returns the files whose names match the pattern.
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

// Lines returns a file's lines.
func (f Files) Lines(name string) []string {
	return strings.Split(strings.TrimSuffix(string(f[name]), "\n"), "\n")
}

// AsConfig renders the files as the data of a ConfigMap.
func (f Files) AsConfig() string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = string(data)
	}
	return toYAML(m)
}

// AsSecrets renders the files as the data of a Secret.
func (f Files) AsSecrets() string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = sprig.TxtFuncMap()["b64enc"].(func(string) string)(string(data))
	}
	return toYAML(m)
}

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has tells whether `group/version` or `group/version/Kind` is served.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// The API versions of a Kubernetes 1.33 server without add-ons (as `helm template` assumes).
var defaultAPIVersions = []string{
	"v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "apiregistration.k8s.io/v1",
	"apps/v1", "authentication.k8s.io/v1", "authorization.k8s.io/v1", "autoscaling/v1",
	"autoscaling/v2", "batch/v1", "certificates.k8s.io/v1", "coordination.k8s.io/v1",
	"discovery.k8s.io/v1", "events.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1",
	"networking.k8s.io/v1", "node.k8s.io/v1", "policy/v1", "rbac.authorization.k8s.io/v1",
	"scheduling.k8s.io/v1", "storage.k8s.io/v1",
}

// --- template functions ---------------------------------------------------------------------------

func toYAML(v interface{}) string {
	// Through JSON first, as sigs.k8s.io/yaml does: struct tags and map key order as Helm's.
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return ""
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	var doc interface{}
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	m, _ := toJSONish(doc).(map[string]interface{})
	if m == nil {
		return map[string]interface{}{}
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var a []interface{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		return []interface{}{err.Error()}
	}
	return toJSONish(a).([]interface{})
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

type renderer struct {
	tmpl *template.Template
}

func (r *renderer) funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these two: a chart must not read the renderer's environment.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	// `helm template` has no cluster: lookup finds nothing.
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := r.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := r.tmpl.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse tpl text: %w", err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

// chartMeta is .Chart, with the field names Helm gives it.
func chartMeta(raw map[string]interface{}) map[string]interface{} {
	names := map[string]string{
		"apiVersion": "APIVersion", "name": "Name", "version": "Version", "appVersion": "AppVersion",
		"description": "Description", "type": "Type", "kubeVersion": "KubeVersion", "home": "Home",
		"icon": "Icon", "sources": "Sources", "keywords": "Keywords", "maintainers": "Maintainers",
		"annotations": "Annotations", "dependencies": "Dependencies", "deprecated": "Deprecated",
	}
	out := map[string]interface{}{}
	for k, v := range raw {
		if n, ok := names[k]; ok {
			out[n] = v
		}
	}
	return out
}

func render(opts options) (string, error) {
	chartYAML, err := readYAMLMap(filepath.Join(opts.chart, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	if chartYAML["apiVersion"] != "v2" {
		return "", fmt.Errorf("Chart.yaml: apiVersion must be v2, found %v", chartYAML["apiVersion"])
	}
	chartName, _ := chartYAML["name"].(string)
	if chartName == "" {
		return "", errors.New("Chart.yaml: name is required")
	}

	values, err := readYAMLMap(filepath.Join(opts.chart, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, file := range opts.valueFiles {
		extra, err := readYAMLMap(file)
		if err != nil {
			return "", err
		}
		mergeInto(values, extra)
	}
	for _, set := range opts.sets {
		if err := applySet(values, set); err != nil {
			return "", err
		}
	}
	if err := validateSchema(chartName, opts.chart, values); err != nil {
		return "", err
	}

	files := Files{}
	var templates []string
	err = filepath.Walk(opts.chart, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(opts.chart, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, rel)
			return nil
		}
		data, err := os.ReadFile(p)
		files[rel] = data
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(templates)

	apiVersions := append(VersionSet{}, defaultAPIVersions...)
	apiVersions = append(apiVersions, opts.apiVersions...)
	kube := strings.TrimPrefix(opts.kubeVersion, "v")
	major, minor, _ := strings.Cut(kube, ".")
	minor, _, _ = strings.Cut(minor, ".")
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartMeta(chartYAML),
		"Release": map[string]interface{}{
			"Name": opts.name, "Namespace": opts.namespace, "IsInstall": !opts.upgrade,
			"IsUpgrade": opts.upgrade, "Revision": 1, "Service": "Helm",
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v" + kube, "GitVersion": "v" + kube, "Major": major, "Minor": minor,
			},
			"APIVersions": apiVersions,
			"HelmVersion": map[string]interface{}{"Version": "v3.17.0"},
		},
		"Files": files,
	}

	r := &renderer{}
	r.tmpl = template.New("gotpl").Option("missingkey=zero")
	r.tmpl.Funcs(r.funcs())
	for _, name := range templates {
		data, err := os.ReadFile(filepath.Join(opts.chart, name))
		if err != nil {
			return "", err
		}
		full := chartName + "/" + name
		if _, err := r.tmpl.New(full).Parse(string(data)); err != nil {
			return "", fmt.Errorf("parse error in %s: %w", full, err)
		}
	}

	var out strings.Builder
	if opts.includeCRDs && !opts.notes {
		crds, _ := filepath.Glob(filepath.Join(opts.chart, "crds", "*.yaml"))
		sort.Strings(crds)
		for _, crd := range crds {
			data, err := os.ReadFile(crd)
			if err != nil {
				return "", err
			}
			rel, _ := filepath.Rel(opts.chart, crd)
			for _, doc := range splitDocuments(string(data)) {
				fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s\n", chartName, filepath.ToSlash(rel), doc)
			}
		}
	}
	for _, name := range templates {
		base := path.Base(name)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != opts.notes {
			continue
		}
		if !isNotes && !strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".yml") && !strings.HasSuffix(base, ".tpl") {
			continue
		}
		if strings.HasSuffix(base, ".tpl") {
			continue
		}
		full := chartName + "/" + name
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{
			"Name": full, "BasePath": chartName + "/templates",
		}
		var buf bytes.Buffer
		if err := r.tmpl.ExecuteTemplate(&buf, full, data); err != nil {
			return "", fmt.Errorf("%s", err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if isNotes {
			out.WriteString(text)
			continue
		}
		for _, doc := range splitDocuments(text) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, doc)
		}
	}
	return out.String(), nil
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a YAML stream and drops documents that hold only blanks and comments.
func splitDocuments(text string) []string {
	var docs []string
	for _, doc := range separator.Split(text, -1) {
		meaningful := false
		for _, line := range strings.Split(doc, "\n") {
			t := strings.TrimSpace(line)
			if t != "" && !strings.HasPrefix(t, "#") {
				meaningful = true
				break
			}
		}
		if meaningful {
			docs = append(docs, strings.Trim(doc, "\n"))
		}
	}
	return docs
}
