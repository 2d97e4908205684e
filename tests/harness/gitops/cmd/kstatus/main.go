// Command kstatus computes the kstatus of objects with sigs.k8s.io/cli-utils'
// status.Compute, the library behind `kubectl wait`-like tools and (through Flux's fork of
// it) Flux's health checks.
//
// Usage: kstatus < objects.json > results.json
//
// stdin is a JSON array of objects as the API server returns them; stdout is a JSON array
// with one {"status", "message"} or {"error"} per object. `kstatus -version` prints the
// versions of the modules it was built with.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func versions() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	out := []string{"kstatus"}
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
	if len(os.Args) != 1 {
		return errors.New("usage: kstatus < objects.json")
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(os.Stdin); err != nil {
		return err
	}
	var objects []json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &objects); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	results := make([]result, 0, len(objects))
	for _, raw := range objects {
		// UnmarshalJSON: the same decoding (int64 numbers) as a client reading the API.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			results = append(results, result{Error: err.Error()})
			continue
		}
		res, err := status.Compute(u)
		if err != nil {
			results = append(results, result{Error: err.Error()})
			continue
		}
		results = append(results, result{Status: res.Status.String(), Message: res.Message})
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
