package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"airside/resources/resource"
)

type getParams struct {
	Depth              int             `json:"depth"`
	Fetch              []string        `json:"fetch"`
	FetchTags          *bool           `json:"fetch_tags"`
	Submodules         json.RawMessage `json:"submodules"`
	SubmoduleRecursive *bool           `json:"submodule_recursive"`
	SubmoduleRemote    bool            `json:"submodule_remote"`
	DisableGitLFS      bool            `json:"disable_git_lfs"`
	CleanTags          bool            `json:"clean_tags"`
	ShortRefFormat     string          `json:"short_ref_format"`
	TimestampFormat    string          `json:"timestamp_format"`
	DescribeRefOptions string          `json:"describe_ref_options"`
	AllBranches        bool            `json:"all_branches"`
	Debug              bool            `json:"debug"`
}

const maxDeepen = 127

// in clones the repository into the destination at the version's ref and writes git-resource's
// files under .git/ (ref, commit, short_ref, branch, tags, author, committer, commit_message, …).
func in(args []string, stdin []byte) (any, error) {
	var req struct {
		Source  source    `json:"source"`
		Version version   `json:"version"`
		Params  getParams `json:"params"`
	}
	if err := decode(stdin, &req, keysOf(getParams{}), "get"); err != nil {
		return nil, err
	}
	s, p, dest := req.Source, req.Params, args[0]
	if p.Debug {
		s.Debug = true
	}
	g, err := newGitEnv(s)
	if err != nil {
		return nil, err
	}
	defer g.close()
	submodules, err := submoduleSelection(p.Submodules)
	if err != nil {
		return nil, err
	}
	if p.DisableGitLFS {
		g.env = append(g.env, "GIT_LFS_SKIP_SMUDGE=1")
	}
	ref := req.Version.Ref
	if ref == "" {
		ref = "HEAD"
	}
	fetchTags := p.FetchTags
	if fetchTags == nil {
		fetchTags = s.FetchTags
	}
	tagFlag := ""
	switch {
	case fetchTags != nil && !*fetchTags:
		tagFlag = "--no-tags"
	case s.TagFilter != "" || s.TagRegex != "" || fetchTags != nil && *fetchTags:
		tagFlag = "--tags"
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, fmt.Errorf("creating the destination: %v", err)
	}

	clone := []string{"clone", "--progress"}
	if !p.AllBranches {
		clone = append(clone, "--single-branch")
	}
	if p.Depth > 0 {
		clone = append(clone, "--depth", fmt.Sprint(p.Depth))
	}
	branch := s.Branch
	if req.Version.Branch != "" {
		resource.Logf("Override %s with %s", s.Branch, req.Version.Branch)
		branch = req.Version.Branch
	}
	if branch != "" {
		clone = append(clone, "--branch", branch)
	}
	if tagFlag == "--no-tags" {
		clone = append(clone, "--no-tags")
	}
	if _, err := g.run("", append(clone, "--", s.URI, dest)...); err != nil {
		return nil, err
	}
	for _, kv := range s.GitConfig { // kept in the clone, for the tasks that use it
		if _, err := g.run(dest, "config", kv.Name, kv.Value); err != nil {
			return nil, err
		}
	}
	fetch := []string{"fetch", "--quiet", "origin", "refs/notes/*:refs/notes/*"}
	if tagFlag != "" {
		fetch = append(fetch, tagFlag)
	}
	if _, err := g.run(dest, fetch...); err != nil {
		return nil, err
	}
	if p.Depth > 0 {
		if err := deepenUntilFound(g, dest, ref, p.Depth, tagFlag); err != nil {
			return nil, err
		}
	} else if _, err := g.run(dest, "checkout", "-f", "-q", ref); err != nil {
		return nil, fmt.Errorf("checking out %s: %v", ref, err)
	}
	if line, err := g.run(dest, "log", "-1", "--oneline", "--no-color"); err == nil {
		resource.Logf("%s", strings.TrimSpace(line))
	}
	if _, err := g.run(dest, "clean", "--force", "--force", "-d"); err != nil {
		return nil, err
	}
	if err := updateSubmodules(g, dest, submodules, p); err != nil {
		return nil, err
	}
	for _, b := range p.Fetch {
		if _, err := g.run(dest, "fetch", "--quiet", "origin", b); err != nil {
			return nil, err
		}
		if _, err := g.quiet(dest, "show-ref", "--verify", "--quiet", "refs/heads/"+b); err != nil {
			if _, err := g.run(dest, "branch", b, "FETCH_HEAD"); err != nil {
				return nil, err
			}
		}
	}

	returnRef := ref
	if ref == "HEAD" {
		head, err := g.run(dest, "rev-parse", "HEAD")
		if err != nil {
			return nil, err
		}
		returnRef = strings.TrimSpace(head)
	}
	meta, err := metadata(g, dest)
	if err != nil {
		return nil, err
	}
	if err := writeFiles(g, dest, returnRef, meta, p); err != nil {
		return nil, err
	}
	if p.CleanTags {
		if tags, err := g.run(dest, "tag"); err == nil && len(lines(tags)) > 0 {
			if _, err := g.run(dest, append([]string{"tag", "-d"}, lines(tags)...)...); err != nil {
				return nil, err
			}
		}
	}
	return response{Version: version{Ref: returnRef}, Metadata: meta}, nil
}

// deepenUntilFound: a shallow clone counts its depth from the branch tip, so commits pushed on top
// of ref may leave ref (and depth-1 commits under it) outside it; deepen, doubling, until they are
// there, and past maxDeepen fetch the whole history.
func deepenUntilFound(g *gitEnv, dir, ref string, depth int, tagFlag string) error {
	total, step := depth, depth
	for {
		if _, err := g.quiet(dir, "checkout", "-f", "-q", fmt.Sprintf("%s~%d", ref, depth-1)); err == nil {
			break
		}
		if _, err := os.Stat(filepath.Join(dir, ".git", "shallow")); err != nil {
			resource.Logf("reached the depth of the repository while deepening: it is a full clone now")
			break
		}
		resource.Logf("could not find %s~%d in a shallow clone of depth %d", ref, depth-1, total)
		step *= 2
		args := []string{"fetch", "--quiet", "--deepen", fmt.Sprint(step), "origin"}
		if total >= maxDeepen {
			resource.Logf("reached the depth threshold %d: fetching the whole history", maxDeepen)
			args = []string{"fetch", "--quiet", "--unshallow", "origin"}
		}
		if tagFlag != "" {
			args = append(args, tagFlag)
		}
		if _, err := g.run(dir, args...); err != nil {
			return err
		}
		if total >= maxDeepen {
			break
		}
		total += step
	}
	if _, err := g.run(dir, "checkout", "-f", "-q", ref); err != nil {
		return fmt.Errorf("checking out %s: %v", ref, err)
	}
	return nil
}

// submoduleSelection: nil = all, empty = none, else those paths.
func submoduleSelection(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var word string
	if err := json.Unmarshal(raw, &word); err == nil {
		switch word {
		case "all":
			return nil, nil
		case "none":
			return []string{}, nil
		}
		return nil, fmt.Errorf("params.submodules %q: expected all, none or a list of paths", word)
	}
	var paths []string
	if err := json.Unmarshal(raw, &paths); err != nil {
		return nil, fmt.Errorf("params.submodules: expected all, none or a list of paths")
	}
	if paths == nil {
		paths = []string{}
	}
	return paths, nil
}

func updateSubmodules(g *gitEnv, dir string, selected []string, p getParams) error {
	if selected != nil && len(selected) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, ".gitmodules")); err != nil {
		return nil
	}
	if _, err := g.run(dir, "submodule", "sync", "--quiet"); err != nil {
		return err
	}
	names, _ := g.quiet(dir, "config", "--file", ".gitmodules", "--name-only", "--get-regexp", `\.path$`)
	for _, key := range lines(names) {
		name := strings.TrimSuffix(strings.TrimPrefix(key, "submodule."), ".path")
		subPath, _ := g.quiet(dir, "config", "--file", ".gitmodules", "--get", "submodule."+name+".path")
		subPath = strings.TrimSpace(subPath)
		if selected != nil && !contains(selected, subPath) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, subPath)); err != nil {
			resource.Logf("warning: skipping missing submodule: %s", subPath)
			continue
		}
		args := []string{"submodule", "update", "--init"}
		if p.Depth > 0 {
			args = append(args, "--depth", fmt.Sprint(p.Depth))
		}
		if p.SubmoduleRecursive == nil || *p.SubmoduleRecursive {
			args = append(args, "--recursive")
		}
		if p.SubmoduleRemote {
			args = append(args, "--remote")
		}
		if _, err := g.run(dir, append(args, "--", subPath)...); err != nil {
			return fmt.Errorf("submodule %s: %v", subPath, err)
		}
	}
	return nil
}

func gitLog(g *gitEnv, dir, format string, extra ...string) string {
	out, _ := g.quiet(dir, append([]string{"log", "-1", "--no-color", "--format=format:" + format}, extra...)...)
	return out
}

var commitURL = regexp.MustCompile(`^(https?://|ssh://git@|git@)([^/]+)/(.*)$`)

// metadata is git-resource's list: commit, author, author_date, committer, committer_date, branch,
// tags, message and (for the hosting sites it knows) url.
func metadata(g *gitEnv, dir string) ([]resource.MetadataField, error) {
	head, err := g.run(dir, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	sha := strings.TrimSpace(head)
	meta := []resource.MetadataField{
		{Name: "commit", Value: sha},
		{Name: "author", Value: gitLog(g, dir, "%an")},
		{Name: "author_date", Value: gitLog(g, dir, "%ai"), Type: "time"},
		{Name: "committer", Value: gitLog(g, dir, "%cn")},
		{Name: "committer_date", Value: gitLog(g, dir, "%ci"), Type: "time"},
	}
	refs, _ := g.quiet(dir, "show-ref", "--heads")
	var branches []string
	for _, l := range lines(refs) {
		if s, name, ok := strings.Cut(l, " "); ok && s == sha {
			branches = append(branches, strings.TrimPrefix(name, "refs/heads/"))
		}
	}
	if len(branches) > 0 {
		meta = append(meta, resource.MetadataField{Name: "branch", Value: strings.Join(branches, ",")})
	}
	tags, _ := g.quiet(dir, "tag", "--points-at", "HEAD")
	if t := lines(tags); len(t) > 0 {
		meta = append(meta, resource.MetadataField{Name: "tags", Value: strings.Join(t, ",")})
	}
	msg := strings.TrimRight(gitLog(g, dir, "%B"), "\n")
	if len(msg) > 10240 {
		msg = msg[:10240]
	}
	meta = append(meta, resource.MetadataField{Name: "message", Value: msg, Type: "message"})
	origin, _ := g.quiet(dir, "remote", "get-url", "origin")
	if m := commitURL.FindStringSubmatch(strings.TrimSpace(origin)); m != nil {
		host, repo := m[2], strings.TrimSuffix(m[3], ".git")
		if m[1] == "git@" && strings.Contains(host, ":") {
			h, org, _ := strings.Cut(host, ":")
			host, repo = h, org+"/"+repo
		}
		url := ""
		switch {
		case strings.Contains(host, "github"), strings.Contains(host, "gogs"):
			url = "https://" + host + "/" + repo + "/commit/" + sha
		case strings.Contains(host, "gitlab"):
			url = "https://" + host + "/" + repo + "/-/commit/" + sha
		case strings.Contains(host, "bitbucket"):
			url = "https://" + host + "/" + repo + "/commits/" + sha
		}
		if url != "" {
			meta = append(meta, resource.MetadataField{Name: "url", Value: url})
		}
	}
	return meta, nil
}

func metaValue(meta []resource.MetadataField, name string) string {
	for _, m := range meta {
		if m.Name == name {
			return m.Value
		}
	}
	return ""
}

func writeFiles(g *gitEnv, dir, ref string, meta []resource.MetadataField, p getParams) error {
	short := ref
	if len(short) > 7 {
		short = short[:7]
	}
	format := p.ShortRefFormat
	if format == "" {
		format = "%s"
	}
	tsFormat := p.TimestampFormat
	if tsFormat == "" {
		tsFormat = "iso8601"
	}
	describe := []string{"describe"}
	if p.DescribeRefOptions == "" {
		describe = append(describe, "--always", "--dirty", "--broken")
	} else {
		describe = append(describe, strings.Fields(p.DescribeRefOptions)...)
	}
	described, _ := g.quiet(dir, describe...)
	metaJSON, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	files := map[string]string{
		"ref":              ref + "\n",
		"short_ref":        strings.ReplaceAll(format, "%s", short),
		"commit":           metaValue(meta, "commit") + "\n",
		"author":           metaValue(meta, "author") + "\n",
		"author_date":      metaValue(meta, "author_date") + "\n",
		"branch":           metaValue(meta, "branch") + "\n",
		"tags":             metaValue(meta, "tags") + "\n",
		"url":              metaValue(meta, "url") + "\n",
		"committer":        gitLog(g, dir, "%ae"), // an email address, for notifications (as git-resource)
		"committer_name":   gitLog(g, dir, "%an"),
		"committer_date":   metaValue(meta, "committer_date") + "\n",
		"commit_message":   gitLog(g, dir, "%B"),
		"commit_timestamp": gitLog(g, dir, "%cd", "--date="+tsFormat) + "\n",
		"describe_ref":     strings.TrimSpace(described) + "\n",
		"metadata.json":    string(metaJSON) + "\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, ".git", name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("writing .git/%s: %v", name, err)
		}
	}
	return nil
}
