// Command argocd-health runs a resource health check from an argocd-cm ConfigMap the way
// Argo CD's application controller does, with the interpreter Argo CD embeds
// (github.com/yuin/gopher-lua) and the same conversions on the way in and out
// (argo-cd util/lua/lua.go, util/settings/settings.go, gitops-engine pkg/health).
//
// Usage: argocd-health ARGOCD_CM_JSON < objects.json > results.json
//
// stdin is a JSON array of objects as the API server returns them; stdout is a JSON array
// with one {"status", "message"} (Argo CD's HealthStatus) or {"error"} per object.
// `argocd-health -version` prints the versions of the modules it was built with.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

const (
	customizationsPrefix = "resource.customizations"
	invalidHealthStatus  = "Lua returned an invalid health status"
)

// healthStatus is gitops-engine's health.HealthStatus.
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

type result struct {
	healthStatus
	Error string `json:"error,omitempty"`
}

// override is the part of appv1.ResourceOverride a health check uses.
type override struct {
	HealthLua   string
	UseOpenLibs bool
}

// overridesFromConfigMap parses the split keys `resource.customizations.<type>.<group_kind>`
// as settings.appendResourceOverridesFromSplitKeys does (health and useOpenLibs only).
func overridesFromConfigMap(data map[string]string) (map[string]override, error) {
	overrides := map[string]override{}
	for k, v := range data {
		if !strings.HasPrefix(k, customizationsPrefix) {
			continue
		}
		parts := strings.SplitN(k, ".", 4)
		if len(parts) < 4 {
			continue
		}
		key, err := convertToOverrideKey(parts[3])
		if err != nil {
			return nil, err
		}
		if key == "all" {
			key = "*/*"
		}
		o := overrides[key]
		switch parts[2] {
		case "health":
			o.HealthLua = v
		case "useOpenLibs":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, err
			}
			o.UseOpenLibs = b
		default:
			continue // actions, ignoreDifferences, ...: not used by health checks
		}
		overrides[key] = o
	}
	return overrides, nil
}

func convertToOverrideKey(groupKind string) (string, error) {
	parts := strings.Split(groupKind, "_")
	if len(parts) == 2 {
		return fmt.Sprintf("%s/%s", parts[0], parts[1]), nil
	} else if len(parts) == 1 && groupKind != "" {
		return groupKind, nil
	}
	return "", fmt.Errorf("group kind should be in format `resource.customizations.<type>.<group_kind>` or resource.customizations.<type>.<kind>`, got group kind: '%s'", groupKind)
}

// configMapKey is lua.GetConfigMapKey: "<group>/<kind>", or "<kind>" for the core group.
func configMapKey(obj map[string]any) string {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group := ""
	if i := strings.LastIndex(apiVersion, "/"); i >= 0 {
		group = apiVersion[:i]
	}
	if group == "" {
		return kind
	}
	return group + "/" + kind
}

// decodeValue is argo-cd's lua.decodeValue (numbers arrive as int64 or float64, as in an
// unstructured.Unstructured read from the API server).
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []any:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	case nil:
		return lua.LNil
	}
	return lua.LNil
}

// unstructuredNumbers converts json.Number as apimachinery's util/json does for
// unstructured objects: int64 when the number is an integer, float64 otherwise.
func unstructuredNumbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = unstructuredNumbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = unstructuredNumbers(v[k])
		}
	}
	return value
}

// safeOs is the part of argo-cd's oslib_safe used here: os.time() without arguments.
// (Argo CD also offers os.time{...} and os.date; a script using them fails here, never the
// other way round.)
var safeOs = map[string]lua.LGFunction{
	"time": func(l *lua.LState) int {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	},
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOs))
	return 1
}

// runLua is VM.runLuaWithResourceActionParameters without action parameters.
func runLua(obj map[string]any, script string, useOpenLibs bool) (*lua.LState, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true},
			lua.LString(pair.n)); err != nil {
			panic(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", decodeValue(l, obj))
	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	return l, err
}

func validStatus(code string) bool {
	switch code {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return true
	}
	return false
}

// executeHealthLua is VM.ExecuteHealthLua.
func executeHealthLua(obj map[string]any, script string, useOpenLibs bool) (*healthStatus, error) {
	l, err := runLua(obj, script, useOpenLibs)
	defer l.Close()
	if err != nil {
		return nil, err
	}
	returnValue := l.Get(-1)
	switch returnValue.Type() {
	case lua.LTTable:
		jsonBytes, err := luajson.Encode(returnValue)
		if err != nil {
			return nil, err
		}
		hs := &healthStatus{}
		if err := json.Unmarshal(jsonBytes, hs); err != nil {
			typeError := &json.UnmarshalTypeError{Value: "array", Type: reflect.TypeOf(hs)}
			if errors.As(err, &typeError) {
				return &healthStatus{}, nil
			}
			return nil, err
		}
		if !validStatus(hs.Status) {
			return &healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
		}
		return hs, nil
	case lua.LTNil:
		return &healthStatus{}, nil
	}
	return nil, fmt.Errorf("expect table output from Lua script, not %s", returnValue.Type().String())
}

// resourceHealth is gitops-engine's health.GetResourceHealth with the Lua override only.
func resourceHealth(obj map[string]any, overrides map[string]override) result {
	if meta, ok := obj["metadata"].(map[string]any); ok && meta["deletionTimestamp"] != nil {
		return result{healthStatus: healthStatus{Status: "Progressing", Message: "Pending deletion"}}
	}
	key := configMapKey(obj)
	o, ok := overrides[key]
	if !ok || o.HealthLua == "" {
		return result{Error: fmt.Sprintf("argocd-cm has no health check for %q", key)}
	}
	hs, err := executeHealthLua(obj, o.HealthLua, o.UseOpenLibs)
	if err != nil {
		return result{healthStatus: healthStatus{Status: "Unknown", Message: err.Error()},
			Error: err.Error()}
	}
	return result{healthStatus: *hs}
}

func decodeJSON(data []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(into)
}

func versions() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	out := []string{"argocd-health"}
	for _, dep := range info.Deps {
		out = append(out, dep.Path+"@"+dep.Version)
	}
	return strings.Join(out, " ")
}

func run() error {
	if len(os.Args) == 2 && os.Args[1] == "-version" {
		fmt.Println(versions())
		return nil
	}
	if len(os.Args) != 2 {
		return errors.New("usage: argocd-health ARGOCD_CM_JSON < objects.json")
	}
	cmBytes, err := os.ReadFile(os.Args[1])
	if err != nil {
		return err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(cmBytes, &cm); err != nil {
		return fmt.Errorf("%s: %w", os.Args[1], err)
	}
	overrides, err := overridesFromConfigMap(cm.Data)
	if err != nil {
		return err
	}
	input, err := readAll()
	if err != nil {
		return err
	}
	var objects []any
	if err := decodeJSON(input, &objects); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	results := make([]result, 0, len(objects))
	for _, raw := range objects {
		obj, ok := unstructuredNumbers(raw).(map[string]any)
		if !ok {
			results = append(results, result{Error: "not a JSON object"})
			continue
		}
		results = append(results, resourceHealth(obj, overrides))
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}

func readAll() ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(os.Stdin)
	return buf.Bytes(), err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}
