package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"airside/resources/resource"
)

var ciSkip = regexp.MustCompile(`\[ci\sskip\]|\[skip\sci\]`)

type commit struct {
	sha     string
	message string
}

// check lists the versions from the given one on (it included when it still passes the filters),
// oldest first; with no version, only the latest (source.version_depth of them). With tag_filter or
// tag_regex the versions are the matching tags: {"ref": tag, "commit": sha}.
func check(_ []string, stdin []byte) (any, error) {
	var req struct {
		Source  source   `json:"source"`
		Version *version `json:"version"`
	}
	if err := decode(stdin, &req, nil, "check"); err != nil {
		return nil, err
	}
	s := req.Source
	g, err := newGitEnv(s)
	if err != nil {
		return nil, err
	}
	defer g.close()
	if s.TagFilter != "" && s.TagRegex != "" {
		return nil, errors.New("cannot provide both tag_filter and tag_regex")
	}
	if s.TagBehaviour != "" && s.TagBehaviour != "match_tagged" {
		return nil, fmt.Errorf("source.tag_behaviour %q: airside's git resource supports only match_tagged", s.TagBehaviour)
	}
	depth := 1
	if s.VersionDepth != nil {
		if *s.VersionDepth <= 0 {
			return nil, fmt.Errorf("invalid version_depth %d: must be a positive number", *s.VersionDepth)
		}
		depth = *s.VersionDepth
	}
	filter, err := newMessageFilter(s)
	if err != nil {
		return nil, err
	}
	var tagRE *regexp.Regexp
	if s.TagRegex != "" {
		if tagRE, err = regexp.Compile(`^(?:` + s.TagRegex + `)$`); err != nil {
			return nil, fmt.Errorf("source.tag_regex: %v", err)
		}
	}
	tagged := s.TagFilter != "" || s.TagRegex != ""

	repo := filepath.Join(g.home, "repo")
	clone := []string{"clone", "--bare", "--quiet", "--filter=blob:none"}
	if !tagged {
		clone = append(clone, "--single-branch", "--no-tags")
		if s.Branch != "" {
			clone = append(clone, "--branch", s.Branch)
		}
	}
	if _, err := g.run("", append(clone, "--", s.URI, repo)...); err != nil {
		return nil, err
	}
	if tagged {
		if _, err := g.run(repo, "fetch", "--quiet", "--tags", "--force", "origin"); err != nil {
			return nil, err
		}
	}

	ref := ""
	if req.Version != nil && req.Version.Ref != "" {
		if _, err := g.quiet(repo, "cat-file", "-e", req.Version.Ref+"^{commit}"); err == nil {
			ref = req.Version.Ref
		} else {
			resource.Logf("version %s is no longer in the repository: starting from the latest commit", req.Version.Ref)
		}
	}
	logArgs := []string{"log", "--first-parent", "--no-color", "--no-decorate", "--format=%H%x1f%B%x1e"}
	if tagged {
		logArgs = append(logArgs, "--all")
	} else {
		logArgs = append(logArgs, "HEAD")
	}
	if ref != "" {
		if _, err := g.quiet(repo, "rev-parse", "--verify", "-q", ref+"~1"); err == nil {
			logArgs = append(logArgs, "^"+ref+"~1") // ref and what came after it
		} // a root commit: the whole history is "after" it
	}
	logArgs = append(logArgs, pathspec(s)...)
	text, err := g.run(repo, logArgs...)
	if err != nil {
		return nil, err
	}
	var commits []commit // newest first
	for _, rec := range strings.Split(text, "\x1e") {
		sha, msg, ok := strings.Cut(strings.TrimLeft(rec, "\n"), "\x1f")
		if !ok || sha == "" {
			continue
		}
		if filter.keep(msg) {
			commits = append(commits, commit{sha: sha, message: msg})
		}
	}

	if tagged {
		return checkTags(g, repo, s, ref, tagRE, commits, depth)
	}
	if ref == "" && len(commits) > depth {
		commits = commits[:depth]
	}
	versions := make([]version, 0, len(commits))
	for i := len(commits) - 1; i >= 0; i-- {
		versions = append(versions, version{Ref: commits[i].sha})
	}
	return versions, nil
}

// pathspec is `-- paths :!ignore_paths` (git's own glob pathspecs, as git-resource passes them).
func pathspec(s source) []string {
	if len(s.Paths) == 0 && len(s.IgnorePaths) == 0 {
		return nil
	}
	spec := []string{"--"}
	if len(s.Paths) == 0 {
		spec = append(spec, ".")
	}
	spec = append(spec, s.Paths...)
	for _, p := range s.IgnorePaths {
		spec = append(spec, ":!"+p)
	}
	return spec
}

// checkTags: the tags matching the filter, oldest first by creation date, whose commit passed the
// commit filters; from the given tag on when there is one (on the branch, when it is set).
func checkTags(g *gitEnv, repo string, s source, ref string, tagRE *regexp.Regexp, commits []commit,
	depth int) ([]version, error) {
	args := []string{"tag", "--sort=creatordate"}
	if ref != "" && s.Branch != "" {
		args = append(args, "--contains", ref, "--merged", s.Branch)
	} else if s.Branch != "" {
		args = append(args, "--merged", s.Branch)
	}
	if s.TagFilter != "" {
		args = append(args, "--list", s.TagFilter) // git's own glob, as git-resource uses it
	}
	text, err := g.run(repo, args...)
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, t := range lines(text) {
		if tagRE != nil && !tagRE.MatchString(t) {
			continue
		}
		tags = append(tags, t)
	}
	if ref != "" && s.Branch == "" {
		for i, t := range tags {
			if t == ref {
				tags = tags[i:]
				break
			}
			if i == len(tags)-1 {
				tags = nil
			}
		}
	}
	targets, err := tagTargets(g, repo)
	if err != nil {
		return nil, err
	}
	passed := map[string]bool{}
	for _, c := range commits {
		passed[c.sha] = true
	}
	versions := []version{}
	for _, t := range tags {
		if sha := targets[t]; passed[sha] {
			versions = append(versions, version{Ref: t, Commit: sha})
		}
	}
	if len(versions) > depth { // as git-resource: the newest version_depth tags (default 1), even after a ref
		versions = versions[len(versions)-depth:]
	}
	return versions, nil
}

// tagTargets maps each tag to the commit it points at (annotated tags peeled).
func tagTargets(g *gitEnv, repo string) (map[string]string, error) {
	text, err := g.run(repo, "for-each-ref", "--format=%(refname:short) %(objectname) %(*objectname)", "refs/tags")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range lines(text) {
		f := strings.Fields(l)
		switch len(f) {
		case 2:
			out[f[0]] = f[1]
		case 3:
			out[f[0]] = f[2]
		}
	}
	return out, nil
}

// messageFilter is [ci skip] / [skip ci] (unless disable_ci_skip) and commit_filter.
type messageFilter struct {
	ciSkip                 bool
	include, exclude       []*regexp.Regexp
	includeAll, excludeAll bool
}

func newMessageFilter(s source) (messageFilter, error) {
	f := messageFilter{ciSkip: !s.DisableCISkip}
	if s.CommitFilter == nil {
		return f, nil
	}
	f.includeAll, f.excludeAll = s.CommitFilter.IncludeAllMatch, s.CommitFilter.ExcludeAllMatch
	for i, list := range [][]string{s.CommitFilter.Include, s.CommitFilter.Exclude} {
		for _, p := range list {
			re, err := regexp.Compile("(?m)" + p)
			if err != nil {
				return f, fmt.Errorf("source.commit_filter: %q: %v", p, err)
			}
			if i == 0 {
				f.include = append(f.include, re)
			} else {
				f.exclude = append(f.exclude, re)
			}
		}
	}
	return f, nil
}

func matches(res []*regexp.Regexp, all bool, msg string) bool {
	n := 0
	for _, re := range res {
		if re.MatchString(msg) {
			n++
		}
	}
	if all {
		return n == len(res)
	}
	return n > 0
}

func (f messageFilter) keep(msg string) bool {
	if len(f.include) > 0 && !matches(f.include, f.includeAll, msg) {
		return false
	}
	if len(f.exclude) > 0 && matches(f.exclude, f.excludeAll, msg) {
		return false
	}
	return !(f.ciSkip && ciSkip.MatchString(msg))
}
