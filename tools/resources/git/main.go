// The git resource: tracks the commits of a branch (or its tags) and pushes to it, with the source
// fields, params and files of Concourse's git-resource. It runs the git CLI of its root filesystem.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"airside/resources/resource"
)

type configPair struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type commitFilter struct {
	Include         []string `json:"include"`
	IncludeAllMatch bool     `json:"include_all_match"`
	Exclude         []string `json:"exclude"`
	ExcludeAllMatch bool     `json:"exclude_all_match"`
}

type source struct {
	URI                 string        `json:"uri"`
	Branch              string        `json:"branch"`
	PrivateKey          string        `json:"private_key"`
	PrivateKeyUser      string        `json:"private_key_user"`
	Username            string        `json:"username"`
	Password            string        `json:"password"`
	Paths               []string      `json:"paths"`
	IgnorePaths         []string      `json:"ignore_paths"`
	SkipSSLVerification bool          `json:"skip_ssl_verification"`
	TagFilter           string        `json:"tag_filter"`
	TagRegex            string        `json:"tag_regex"`
	TagBehaviour        string        `json:"tag_behaviour"`
	FetchTags           *bool         `json:"fetch_tags"`
	GitConfig           []configPair  `json:"git_config"`
	DisableCISkip       bool          `json:"disable_ci_skip"`
	CommitFilter        *commitFilter `json:"commit_filter"`
	VersionDepth        *int          `json:"version_depth"`
	Debug               bool          `json:"debug"`
}

// Source fields of Concourse's git-resource this one does not implement: refused by name rather than
// silently ignored, so a pipeline never gets a different behaviour than it asked for.
var unsupportedSource = []string{
	"private_key_passphrase", "forward_agent", "sparse_paths", "submodule_credentials",
	"commit_verification_keys", "commit_verification_key_ids", "gpg_keyserver", "git_crypt_key",
	"https_tunnel", "search_remote_refs",
}

type version struct {
	Ref    string `json:"ref"`
	Commit string `json:"commit,omitempty"`
	Branch string `json:"branch,omitempty"`
}

type response struct {
	Version  version                  `json:"version"`
	Metadata []resource.MetadataField `json:"metadata"`
}

// decode reads the request: unknown keys in source or params are refused naming them (as
// git-resource's schema check does), and the keys it knows but airside does not implement too.
func decode(stdin []byte, v any, paramKeys []string, script string) error {
	var raw struct {
		Source json.RawMessage `json:"source"`
		Params json.RawMessage `json:"params"`
	}
	if err := resource.Decode(stdin, &raw, false); err != nil {
		return err
	}
	if err := unknownKeys(raw.Source, "source", sourceKeys(), unsupportedSource); err != nil {
		return err
	}
	if err := unknownKeys(raw.Params, script+" params", paramKeys, nil); err != nil {
		return err
	}
	if err := resource.Decode(stdin, v, false); err != nil {
		return err
	}
	return nil
}

func sourceKeys() []string { return keysOf(source{}) }

// keysOf lists the JSON keys of a struct (none of its fields is omitempty).
func keysOf(v any) []string {
	var keys []string
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func unknownKeys(raw json.RawMessage, what string, known, unsupported []string) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("invalid request: %s must be a JSON object", what)
	}
	var unknown, notHere []string
	for k := range m {
		switch {
		case contains(known, k):
		case contains(unsupported, k):
			notHere = append(notHere, k)
		default:
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	sort.Strings(notHere)
	if len(notHere) > 0 {
		return fmt.Errorf("%s: %s not supported by airside's git resource", what, strings.Join(notHere, ", "))
	}
	if len(unknown) > 0 {
		return fmt.Errorf("found unknown keys in %s: %s", what, strings.Join(unknown, ", "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// gitEnv is the environment every git command of one script runs in: a private HOME (global git
// config, .netrc with username/password), the private key for ssh, and no terminal prompts.
type gitEnv struct {
	home string
	env  []string
}

func newGitEnv(s source) (*gitEnv, error) {
	if strings.TrimSpace(s.URI) == "" {
		return nil, errors.New("invalid payload (missing uri): source.uri is required")
	}
	home, err := os.MkdirTemp("", "git-resource-")
	if err != nil {
		return nil, err
	}
	g := &gitEnv{home: home}
	g.env = append(os.Environ(), "HOME="+home, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	if s.SkipSSLVerification {
		g.env = append(g.env, "GIT_SSL_NO_VERIFY=true")
	}
	if s.Debug {
		g.env = append(g.env, "GIT_TRACE=1", "GIT_TRACE_PACKFILE=1", "GIT_CURL_VERBOSE=1")
	}
	if s.PrivateKey != "" {
		key := filepath.Join(home, "private-key")
		text := strings.TrimRight(s.PrivateKey, "\n") + "\n"
		if err := os.WriteFile(key, []byte(text), 0o600); err != nil {
			return nil, err
		}
		// as git-resource: no host key checking (the key proves the client; the URI names the server)
		ssh := fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "+
			"-o UserKnownHostsFile=/dev/null -o LogLevel=quiet -o BatchMode=yes", shellQuote(key))
		if s.PrivateKeyUser != "" {
			ssh += " -o User=" + shellQuote(s.PrivateKeyUser)
		}
		g.env = append(g.env, "GIT_SSH_COMMAND="+ssh)
	}
	if s.Username != "" && s.Password != "" {
		netrc := fmt.Sprintf("default login %s password %s\n", s.Username, s.Password)
		if err := os.WriteFile(filepath.Join(home, ".netrc"), []byte(netrc), 0o600); err != nil {
			return nil, err
		}
	}
	// an identity for the commits rebase/merge and annotated tags make; git_config overrides it
	defaults := []configPair{{"user.name", "airside"}, {"user.email", "airside@localhost"}}
	for _, kv := range append(defaults, s.GitConfig...) {
		if kv.Name == "" {
			return nil, errors.New("source.git_config: every entry needs a name")
		}
		if _, err := g.run("", "config", "--global", kv.Name, kv.Value); err != nil {
			return nil, fmt.Errorf("source.git_config %s: %v", kv.Name, err)
		}
	}
	return g, nil
}

func (g *gitEnv) close() { os.RemoveAll(g.home) }

// run runs git in dir, its stderr going to the build log; it returns stdout.
func (g *gitEnv) run(dir string, args ...string) (string, error) {
	stdout, _, err := g.capture(dir, args...)
	return stdout, err
}

// capture is run that also returns git's stderr (for callers that decide by git's message).
func (g *gitEnv) capture(dir string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, g.env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	os.Stderr.Write(stderr.Bytes())
	if err != nil {
		tail := lines(stderr.String()) // the last lines say why (fatal:, error:, hints before them)
		if len(tail) > 3 {
			tail = tail[len(tail)-3:]
		}
		return stdout.String(), stderr.String(), fmt.Errorf("git %s: %v: %s", args[0], err, strings.Join(tail, " / "))
	}
	return stdout.String(), stderr.String(), nil
}

// quiet runs git without logging its stderr (probes whose failure is an answer).
func (g *gitEnv) quiet(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, g.env
	out, err := cmd.Output()
	return string(out), err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func main() {
	resource.Main("git", resource.Handlers{"check": check, "in": in, "out": out})
}
