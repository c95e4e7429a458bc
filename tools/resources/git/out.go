package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"airside/resources/resource"
)

type putParams struct {
	Repository           string          `json:"repository"`
	Rebase               bool            `json:"rebase"`
	RebaseStrategy       string          `json:"rebase_strategy"`
	RebaseStrategyOption json.RawMessage `json:"rebase_strategy_option"`
	Merge                bool            `json:"merge"`
	Returning            string          `json:"returning"`
	Tag                  string          `json:"tag"`
	OnlyTag              bool            `json:"only_tag"`
	TagPrefix            string          `json:"tag_prefix"`
	Force                bool            `json:"force"`
	Annotate             string          `json:"annotate"`
	Notes                string          `json:"notes"`
	Branch               string          `json:"branch"`
	RefsPrefix           string          `json:"refs_prefix"`
	PushOptions          []string        `json:"push_options"`
	Debug                bool            `json:"debug"`
}

// how often rebase/merge retry a push another writer beat them to
const maxPushAttempts = 100

// out pushes params.repository (a directory in the sources dir) to the source's branch, with its
// tags and the optional new tag; rebase or merge retry when the push is not a fast-forward.
func out(args []string, stdin []byte) (any, error) {
	var req struct {
		Source source    `json:"source"`
		Params putParams `json:"params"`
	}
	if err := decode(stdin, &req, keysOf(putParams{}), "put"); err != nil {
		return nil, err
	}
	s, p, sources := req.Source, req.Params, args[0]
	if p.Debug {
		s.Debug = true
	}
	if strings.TrimSpace(s.URI) == "" {
		return nil, errors.New("invalid payload (missing uri): source.uri is required")
	}
	if s.Branch == "" && !p.OnlyTag && p.Branch == "" {
		return nil, errors.New("invalid payload (missing branch): set source.branch or params.branch")
	}
	if p.Repository == "" {
		return nil, errors.New("invalid payload (missing repository): params.repository names the directory to push")
	}
	if p.Merge && p.Rebase {
		return nil, errors.New("invalid push strategy (either merge or rebase can be set, but not both)")
	}
	if p.Returning != "" && p.Returning != "merged" && p.Returning != "unmerged" {
		return nil, fmt.Errorf("params.returning %q: expected merged or unmerged", p.Returning)
	}
	strategyOpts, err := strategyOptions(p.RebaseStrategyOption)
	if err != nil {
		return nil, err
	}
	inSources := func(rel, what string) (string, error) {
		path := filepath.Join(sources, rel)
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s file '%s' does not exist", what, rel)
		}
		return path, nil
	}
	tagName := ""
	if p.Tag != "" {
		path, err := inSources(p.Tag, "tag")
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if tagName = strings.TrimSpace(string(data)); tagName == "" {
			return nil, fmt.Errorf("tag file '%s' is empty", p.Tag)
		}
		tagName = p.TagPrefix + tagName
	}
	annotate, notes := "", ""
	if p.Annotate != "" {
		if annotate, err = inSources(p.Annotate, "annotation"); err != nil {
			return nil, err
		}
	}
	if p.Notes != "" {
		if notes, err = inSources(p.Notes, "notes"); err != nil {
			return nil, err
		}
	}
	repo := filepath.Join(sources, p.Repository)
	g, err := newGitEnv(s)
	if err != nil {
		return nil, err
	}
	defer g.close()
	if _, err := g.quiet(repo, "rev-parse", "--git-dir"); err != nil {
		return nil, fmt.Errorf("params.repository %q is not a git repository in the sources directory", p.Repository)
	}
	branch := s.Branch
	if p.Branch != "" {
		resource.Logf("Override %s with %s", s.Branch, p.Branch)
		branch = p.Branch
	}
	refsPrefix := p.RefsPrefix
	if refsPrefix == "" {
		refsPrefix = "refs/heads"
	}
	var pushFlags []string
	if p.Force {
		pushFlags = append(pushFlags, "--force")
	}
	for _, o := range p.PushOptions {
		pushFlags = append(pushFlags, "--push-option", o)
	}

	_, _ = g.quiet(repo, "remote", "remove", "push-target")
	if _, err := g.run(repo, "remote", "add", "push-target", s.URI); err != nil {
		return nil, err
	}
	head, err := g.run(repo, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	toPush := strings.TrimSpace(head)

	tag := func() error {
		if tagName == "" {
			return nil
		}
		args := []string{"tag", "-f", tagName}
		if annotate != "" {
			args = append(args, "-a", "-F", annotate)
		}
		_, err := g.run(repo, args...)
		return err
	}
	// push returns (rejected: another writer got there first, error)
	push := func() (bool, error) {
		if err := tag(); err != nil {
			return false, err
		}
		args := append([]string{"push", "--tags", "push-target", "HEAD:" + refsPrefix + "/" + branch}, pushFlags...)
		if _, stderr, err := g.capture(repo, args...); err != nil {
			rejected := strings.Contains(stderr, "[rejected]") ||
				strings.Contains(stderr, "[remote rejected]") && strings.Contains(stderr, "cannot lock ref")
			return rejected, err
		}
		if notes != "" {
			if _, err := g.run(repo, "notes", "add", "-f", "-F", notes); err != nil {
				return false, err
			}
			if _, err := g.run(repo, append([]string{"push", "push-target", "refs/notes/*"}, pushFlags...)...); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	retry := func(what string, prepare func() error) error {
		for attempt := 1; ; attempt++ {
			if err := prepare(); err != nil {
				return fmt.Errorf("%s onto %s failed: %v", what, branch, err)
			}
			rejected, err := push()
			if err == nil {
				return nil
			}
			if !rejected {
				return err
			}
			if attempt == maxPushAttempts {
				return fmt.Errorf("push rejected %d times (the branch kept moving): %v", attempt, err)
			}
			resource.Logf("%s and trying again...", what)
		}
	}

	switch {
	case p.OnlyTag:
		if err := tag(); err != nil {
			return nil, err
		}
		if _, err := g.run(repo, append([]string{"push", "--tags", "push-target"}, pushFlags...)...); err != nil {
			return nil, err
		}
	case p.Merge:
		err = retry("merging", func() error {
			if _, err := g.run(repo, "reset", "--hard", toPush); err != nil {
				return err
			}
			_, _ = g.quiet(repo, "fetch", "push-target", "refs/notes/*:refs/notes/*")
			_, err := g.run(repo, "pull", "--no-edit", "--no-rebase", "push-target", branch)
			return err
		})
	case p.Rebase:
		err = retry("rebasing", func() error {
			_, _ = g.quiet(repo, "fetch", "push-target", "refs/notes/*:refs/notes/*")
			args := []string{"pull", "--rebase=merges"}
			if p.RebaseStrategy != "" {
				args = append(args, "--strategy="+p.RebaseStrategy)
			}
			for _, o := range strategyOpts {
				args = append(args, "-X"+o)
			}
			_, err := g.run(repo, append(args, "push-target", branch)...)
			if err != nil {
				_, _ = g.quiet(repo, "rebase", "--abort")
			}
			return err
		})
	default:
		_, err = push()
	}
	if err != nil {
		return nil, err
	}
	ref := toPush
	if !(p.Merge && p.Returning == "unmerged") {
		if head, err = g.run(repo, "rev-parse", "HEAD"); err != nil {
			return nil, err
		}
		ref = strings.TrimSpace(head)
	}
	meta, err := metadata(g, repo)
	if err != nil {
		return nil, err
	}
	v := version{Ref: ref}
	if p.Branch != "" {
		v.Branch = p.Branch
	}
	resource.Logf("pushed %s to %s", ref, branch)
	return response{Version: v, Metadata: meta}, nil
}

func strategyOptions(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.Fields(s), nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("params.rebase_strategy_option: expected a string or a list of strings")
	}
	return list, nil
}
