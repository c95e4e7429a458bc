// The mock resource: versions and files from its source and params, for tests and examples
// (Concourse's mock-resource, the same source fields, params and behaviour).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"airside/resources/resource"
)

const defaultInitialVersion = "mock"

type source struct {
	MirrorSelf       bool                     `json:"mirror_self"`
	InitialVersion   string                   `json:"initial_version"`
	NoInitialVersion bool                     `json:"no_initial_version"`
	ForceVersion     string                   `json:"force_version"`
	CreateFiles      map[string]any           `json:"create_files"`
	CheckDelay       string                   `json:"check_delay"`
	CheckFailure     string                   `json:"check_failure"`
	Metadata         []resource.MetadataField `json:"metadata"`
	Log              string                   `json:"log"`
}

type version struct {
	Version    string `json:"version"`
	Privileged string `json:"privileged,omitempty"`
}

type getParams struct {
	MirrorSelfViaParams bool           `json:"mirror_self_via_params"`
	CreateFiles         map[string]any `json:"create_files_via_params"`
}

type putParams struct {
	Version  string `json:"version"`
	PrintEnv bool   `json:"print_env"`
	File     string `json:"file"`
}

type response struct {
	Version  version                  `json:"version"`
	Metadata []resource.MetadataField `json:"metadata"`
}

func (s source) initialVersion() string {
	if s.InitialVersion != "" {
		return s.InitialVersion
	}
	if v := os.Getenv("MIRRORED_VERSION"); v != "" { // a task running on a mirrored mock image
		return v
	}
	return defaultInitialVersion
}

func (s source) metadata() []resource.MetadataField {
	if s.Metadata == nil {
		return []resource.MetadataField{}
	}
	return s.Metadata
}

func (s source) log() {
	if s.Log != "" {
		resource.Logf("%s", s.Log)
	}
}

func check(_ []string, stdin []byte) (any, error) {
	var req struct {
		Source  source   `json:"source"`
		Version *version `json:"version"`
	}
	if err := resource.Decode(stdin, &req, true); err != nil {
		return nil, err
	}
	req.Source.log()
	if req.Source.CheckDelay != "" {
		d, err := time.ParseDuration(req.Source.CheckDelay)
		if err != nil {
			return nil, fmt.Errorf("source.check_delay %q is not a duration (e.g. 10s, 1m30s): %v", req.Source.CheckDelay, err)
		}
		time.Sleep(d)
	}
	if req.Source.CheckFailure != "" {
		return nil, fmt.Errorf("intentionally failing to check: %s", req.Source.CheckFailure)
	}
	versions := []version{}
	switch {
	case req.Source.ForceVersion != "":
		versions = append(versions, version{Version: req.Source.ForceVersion})
	case req.Version != nil:
		versions = append(versions, version{Version: req.Version.Version})
	case !req.Source.NoInitialVersion:
		versions = append(versions, version{Version: req.Source.initialVersion()})
	}
	if resource.Privileged() {
		for i := range versions {
			versions[i].Privileged = "true"
		}
	}
	return versions, nil
}

func in(args []string, stdin []byte) (any, error) {
	var req struct {
		Source  source    `json:"source"`
		Version version   `json:"version"`
		Params  getParams `json:"params"`
	}
	if err := resource.Decode(stdin, &req, true); err != nil {
		return nil, err
	}
	dest := args[0]
	req.Source.log()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, fmt.Errorf("creating the destination: %v", err)
	}
	privileged := resource.Privileged()
	if privileged {
		resource.Logf("fetching in a privileged container")
	}
	if err := writeJSON(filepath.Join(dest, "privileged"), privileged); err != nil {
		return nil, err
	}
	resource.Logf("fetching version: %s", req.Version.Version)
	if err := os.WriteFile(filepath.Join(dest, "version"), []byte(req.Version.Version+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("writing the version file: %v", err)
	}
	if req.Source.MirrorSelf || req.Params.MirrorSelfViaParams {
		resource.Logf("mirroring self image (via params: %v)", req.Params.MirrorSelfViaParams)
		if err := mirrorSelf(dest); err != nil {
			return nil, fmt.Errorf("mirroring self: %v", err)
		}
		meta := map[string]any{"env": []string{"MIRRORED_VERSION=" + req.Version.Version}, "user": "root"}
		if err := writeJSON(filepath.Join(dest, "metadata.json"), meta); err != nil {
			return nil, err
		}
	}
	files := map[string]any{}
	maps.Copy(files, req.Source.CreateFiles)
	maps.Copy(files, req.Params.CreateFiles)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := createFile(dest, name, files[name]); err != nil {
			return nil, err
		}
	}
	return response{Version: req.Version, Metadata: req.Source.metadata()}, nil
}

func out(args []string, stdin []byte) (any, error) {
	var req struct {
		Source  source    `json:"source"`
		Version version   `json:"version"`
		Params  putParams `json:"params"`
	}
	if err := resource.Decode(stdin, &req, true); err != nil {
		return nil, err
	}
	sources := args[0]
	req.Source.log()
	if req.Params.Version == "" && req.Params.File == "" {
		return nil, errors.New("no version specified: set params.version, or params.file (a file in the sources dir holding it)")
	}
	v := version{Version: req.Params.Version}
	if v.Version == "" {
		data, err := os.ReadFile(filepath.Join(sources, req.Params.File))
		if err != nil {
			return nil, fmt.Errorf("reading the version from params.file %s: %v", req.Params.File, err)
		}
		v.Version = strings.TrimSpace(string(data))
	}
	if resource.Privileged() {
		resource.Logf("pushing in a privileged container")
		v.Privileged = "true"
	}
	resource.Logf("pushing version: %s", v.Version)
	if req.Params.PrintEnv {
		for _, e := range os.Environ() {
			resource.Logf("env: %s", e)
		}
	}
	return response{Version: v, Metadata: req.Source.metadata()}, nil
}

// createFile writes one create_files entry: a string as is, anything else as JSON; START_VAR and
// END_VAR become (( and )) so that a file can carry ((vars)) the pipeline would otherwise interpolate.
func createFile(dest, name string, content any) error {
	var data []byte
	if s, ok := content.(string); ok {
		data = []byte(s)
	} else {
		var err error
		if data, err = json.Marshal(content); err != nil {
			return fmt.Errorf("create_files %s: %v", name, err)
		}
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(data), "START_VAR", "(("), "END_VAR", "))")
	path := filepath.Join(dest, name)
	if rel, err := filepath.Rel(dest, path); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("create_files: %q is not a path inside the destination", name)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create_files %s: %v", name, err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("create_files %s: %v", name, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %v", filepath.Base(path), err)
	}
	return nil
}

// mirrorSelf copies this container's root filesystem to dest/rootfs (leaving out /dev, /proc, /sys,
// /tmp and whatever holds dest itself), so that a task can run on the mock resource's own image.
func mirrorSelf(dest string) error {
	root := filepath.Join(dest, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := "/" + e.Name()
		switch e.Name() {
		case "dev", "proc", "sys", "tmp":
			info, err := e.Info()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(root, e.Name()), info.Mode().Perm()|os.ModeDir); err != nil {
				return err
			}
			continue
		}
		if absDest == src || strings.HasPrefix(absDest, src+"/") {
			continue
		}
		if err := copyTree(src, filepath.Join(root, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		}
		return nil // devices, sockets and pipes are not part of an image
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func main() {
	resource.Main("mock", resource.Handlers{"check": check, "in": in, "out": out})
}
