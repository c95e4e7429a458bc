// Package resource is the Concourse resource protocol as airside's bundled resource types speak it:
// one static binary per type, installed as /opt/resource/check, /opt/resource/in and /opt/resource/out,
// that reads the request as JSON on stdin, writes the response as JSON on stdout and every log line on
// stderr, and exits non-zero with a message on stderr when it cannot do what was asked.
package resource

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MetadataField is one entry of the metadata list `in` and `out` return.
type MetadataField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type,omitempty"`
}

// Handler runs one script: args are the arguments after the script's name (in/out get the
// destination/sources directory as args[0]), stdin holds the request. The returned value is the
// response written to stdout as JSON.
type Handler func(args []string, stdin []byte) (any, error)

// Handlers names the handler of each script: "check", "in", "out".
type Handlers map[string]Handler

// Main dispatches on the basename of argv[0] (the binary is installed once and reached through the
// names check, in and out) and never returns.
func Main(typeName string, h Handlers) {
	script := filepath.Base(os.Args[0])
	run, ok := h[script]
	if !ok {
		Fatalf("%s resource: invoked as %q; run it as check, in or out (/opt/resource/check|in|out)", typeName, script)
	}
	if script != "check" && (len(os.Args) < 2 || os.Args[1] == "") {
		what := "destination"
		if script == "out" {
			what = "sources"
		}
		Fatalf("usage: %s <%s directory>", os.Args[0], what)
	}
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		Fatalf("reading the request from stdin: %v", err)
	}
	if len(bytes.TrimSpace(stdin)) == 0 {
		Fatalf("invalid request: stdin is empty (expected a JSON object with \"source\")")
	}
	resp, err := run(os.Args[1:], stdin)
	if err != nil {
		Fatalf("%v", err)
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	if err := enc.Encode(resp); err != nil {
		Fatalf("writing the response: %v", err)
	}
	if err := out.Flush(); err != nil {
		Fatalf("writing the response: %v", err)
	}
	os.Exit(0)
}

// Decode reads the request into v. strict refuses fields v does not declare (at every level),
// naming them, as the mock and git resources do upstream.
func Decode(stdin []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(stdin))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("invalid request: not JSON (%v at byte %d)", err, syn.Offset)
		case errors.As(err, &typ):
			return fmt.Errorf("invalid request: %s must be %s, not a JSON %s", typ.Field, typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return fmt.Errorf("invalid request: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return fmt.Errorf("invalid request: %v", err)
	}
	if dec.More() {
		return errors.New("invalid request: more than one JSON value on stdin")
	}
	return nil
}

// Logf writes one line to stderr (the build log).
func Logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
}

// Fatalf writes the message to stderr and exits 1.
func Fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", a...)
	os.Exit(1)
}

// Privileged tells whether this process runs with elevated privileges: root that is root on the host
// (uid 0 mapped to 0, no user namespace) and holds CAP_SYS_ADMIN. airside's unprivileged containers
// run as root without a user namespace but drop CAP_SYS_ADMIN, so the capability decides there;
// Concourse's unprivileged containers are user-namespaced, so the mapping decides there.
func Privileged() bool {
	if data, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		mapped := false
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == "0" && f[1] == "0" {
				mapped = true
			}
		}
		if !mapped {
			return false
		}
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var mask uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%x", &mask); err != nil {
				return false
			}
			const capSysAdmin = 21
			return mask&(1<<capSysAdmin) != 0
		}
	}
	return false
}
