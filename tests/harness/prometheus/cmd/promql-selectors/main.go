// promql-selectors parses PromQL expressions with Prometheus's own parser
// (github.com/prometheus/prometheus/promql/parser, the version go.mod pins) and prints
// the vector selectors of each, so that tests can check every metric a rule or a
// dashboard panel reads against a real /metrics scrape.
//
// Input on stdin: a JSON array of expressions. Output on stdout: a JSON array with one
// object per expression, {"error": "..."} when it does not parse, otherwise
// {"selectors": [{"metric": NAME, "matchers": {LABEL: "=value" | "!=value" | ...}}]}.
// Exit 1 only when the input is not a JSON array of strings.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Metric   string            `json:"metric"`
	Matchers map[string]string `json:"matchers"`
}

type result struct {
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors,omitempty"`
}

func main() {
	version := flag.Bool("version", false, "print the Prometheus module this was built with")
	flag.Parse()
	if *version {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, dep := range info.Deps {
				if dep.Path == "github.com/prometheus/prometheus" {
					fmt.Printf("promql-selectors %s@%s\n", dep.Path, dep.Version)
				}
			}
		}
		return
	}
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "stdin: expected a JSON array of strings: %v\n", err)
		os.Exit(1)
	}
	// The parser Prometheus itself uses for rules and queries, with its defaults:
	// experimental functions are refused, as a default Prometheus refuses them.
	p := parser.NewParser(parser.Options{})
	results := make([]result, 0, len(exprs))
	for _, text := range exprs {
		expr, err := p.ParseExpr(text)
		if err != nil {
			results = append(results, result{Error: err.Error()})
			continue
		}
		res := result{Selectors: []selector{}}
		for _, matchers := range parser.ExtractSelectors(expr) {
			s := selector{Matchers: map[string]string{}}
			for _, m := range matchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					s.Metric = m.Value
					continue
				}
				s.Matchers[m.Name] = m.Type.String() + m.Value
			}
			res.Selectors = append(res.Selectors, s)
		}
		results = append(results, res)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
