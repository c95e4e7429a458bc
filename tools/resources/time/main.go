// The time resource: a new version on an interval, within a daily window, on given days
// (Concourse's time-resource: the same source fields and behaviour). Versions are {"time": RFC 3339}.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // `location` works in a root filesystem without /usr/share/zoneinfo

	"airside/resources/resource"
)

// NowEnv overrides the clock (an RFC 3339 time): for tests only; nothing sets it in a build.
const NowEnv = "AIRSIDE_TIME_RESOURCE_NOW"

type source struct {
	InitialVersion bool        `json:"initial_version"`
	Interval       *interval   `json:"interval"`
	Start          *timeOfDay  `json:"start"`
	Stop           *timeOfDay  `json:"stop"`
	Days           []weekday   `json:"days"`
	Location       *location   `json:"location"`
	StartAfter     *startAfter `json:"start_after"`
}

type version struct {
	Time time.Time `json:"time"`
}

type response struct {
	Version  version                  `json:"version"`
	Metadata []resource.MetadataField `json:"metadata"`
}

func (s source) validate() error {
	if s.Start != nil && s.Stop == nil {
		return errors.New("source: must configure 'stop' if 'start' is set")
	}
	if s.Stop != nil && s.Start == nil {
		return errors.New("source: must configure 'start' if 'stop' is set")
	}
	return nil
}

func (s source) loc() *time.Location {
	if s.Location != nil {
		return (*time.Location)(s.Location)
	}
	return time.UTC
}

func now(s source) (time.Time, error) {
	t := time.Now()
	if v := os.Getenv(NowEnv); v != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return time.Time{}, fmt.Errorf("%s=%q is not an RFC 3339 time: %v", NowEnv, v, err)
		}
	}
	return t.In(s.loc()), nil
}

// window is the daily [start, stop) range that holds (or last began before) ref: start and stop
// default to 00:00, which makes the window the whole day; stop at or before start ends the next day.
func (s source) window(ref time.Time) (time.Time, time.Time) {
	var startTOD, stopTOD timeOfDay
	if s.Start != nil {
		startTOD = *s.Start
	}
	if s.Stop != nil {
		stopTOD = *s.Stop
	}
	loc := s.loc()
	r := ref.In(loc)
	start := time.Date(r.Year(), r.Month(), r.Day(), startTOD.hour(), startTOD.minute(), 0, 0, loc)
	if start.After(r) {
		start = start.AddDate(0, 0, -1)
	}
	stop := time.Date(start.Year(), start.Month(), start.Day(), stopTOD.hour(), stopTOD.minute(), 0, 0, loc)
	if !stop.After(start) {
		stop = stop.AddDate(0, 0, 1)
	}
	return start, stop
}

func (s source) dayMatches(t time.Time) bool {
	if len(s.Days) == 0 {
		return true
	}
	today := t.In(s.loc()).Weekday()
	for _, d := range s.Days {
		if time.Weekday(d) == today {
			return true
		}
	}
	return false
}

// due tells whether check emits a new version at now, after the version prev (zero: none).
func (s source) due(prev, now time.Time) bool {
	if !s.dayMatches(now) {
		return false
	}
	if s.StartAfter != nil {
		sa := time.Time(*s.StartAfter)
		inLoc := time.Date(sa.Year(), sa.Month(), sa.Day(), sa.Hour(), sa.Minute(), sa.Second(), 0, s.loc())
		if !inLoc.Before(now) {
			return false
		}
	}
	start, stop := s.window(now)
	if now.Before(start) || !now.Before(stop) {
		return false
	}
	if prev.IsZero() {
		return true
	}
	if s.Interval != nil {
		return now.Sub(prev) >= time.Duration(*s.Interval)
	}
	return prev.Before(start) // one version per window
}

func check(_ []string, stdin []byte) (any, error) {
	var req struct {
		Source  source  `json:"source"`
		Version version `json:"version"`
	}
	if err := resource.Decode(stdin, &req, false); err != nil {
		return nil, err
	}
	if err := req.Source.validate(); err != nil {
		return nil, err
	}
	t, err := now(req.Source)
	if err != nil {
		return nil, err
	}
	versions := []version{}
	prev := req.Version.Time
	if !prev.IsZero() {
		versions = append(versions, version{Time: prev})
	} else if req.Source.InitialVersion {
		return append(versions, version{Time: t}), nil
	}
	if req.Source.due(prev, t) {
		versions = append(versions, version{Time: t})
	}
	return versions, nil
}

func in(args []string, stdin []byte) (any, error) {
	var req struct {
		Source  source  `json:"source"`
		Version version `json:"version"`
	}
	if err := resource.Decode(stdin, &req, false); err != nil {
		return nil, err
	}
	dest := args[0]
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, fmt.Errorf("creating the destination: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dest, "input"), stdin, 0o644); err != nil {
		return nil, fmt.Errorf("writing the input file: %v", err)
	}
	t := req.Version.Time
	if t.IsZero() {
		var err error
		if t, err = now(req.Source); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"timestamp": t.Format("2006-01-02 15:04:05.999999999 -0700 MST"),
		"epoch":     strconv.FormatInt(t.Unix(), 10),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dest, name), []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("writing the %s file: %v", name, err)
		}
	}
	return response{Version: version{Time: t}, Metadata: []resource.MetadataField{}}, nil
}

func out(_ []string, stdin []byte) (any, error) {
	var req struct {
		Source source `json:"source"`
	}
	if err := resource.Decode(stdin, &req, false); err != nil {
		return nil, err
	}
	t, err := now(req.Source)
	if err != nil {
		return nil, err
	}
	return response{Version: version{Time: t}, Metadata: []resource.MetadataField{}}, nil
}

// --- source field types ---------------------------------------------------------------------------

type interval time.Duration

func (i *interval) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("source.interval must be a duration string such as 60s, 90m or 1h30m")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("source.interval %q: %v (units: ns, us, ms, s, m, h)", s, err)
	}
	if d <= 0 {
		return fmt.Errorf("source.interval %q must be positive", s)
	}
	*i = interval(d)
	return nil
}

type location time.Location

func (l *location) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("source.location must be a time zone name such as Europe/Berlin")
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return fmt.Errorf("source.location %q: %v", s, err)
	}
	*l = location(*loc)
	return nil
}

// timeOfDay is minutes past midnight.
type timeOfDay int

func (t timeOfDay) hour() int   { return int(t) / 60 }
func (t timeOfDay) minute() int { return int(t) % 60 }

var todFormats = []string{
	"3:04 PM -0700", "3PM -0700", "3 PM -0700", "15:04 -0700", "1504 -0700",
	"3:04 PM", "3PM", "3 PM", "15:04", "1504",
}

func (t *timeOfDay) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("start/stop must be a string time such as \"8:00 PM\" or \"20:00\" (quote it in YAML), not %s", b)
	}
	for _, f := range todFormats {
		if parsed, err := time.Parse(f, s); err == nil {
			u := parsed.UTC() // a deprecated offset ("+0700") moves the time of day to UTC
			*t = timeOfDay(u.Hour()*60 + u.Minute())
			return nil
		}
	}
	return fmt.Errorf("invalid time format: %s, must be one of: %s", s, strings.Join(todFormats, ", "))
}

type weekday time.Weekday

func (w *weekday) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("source.days must be a list of day names")
	}
	days := map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
		"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
	l := strings.ToLower(s)
	for prefix, d := range days {
		if l == prefix || l == strings.ToLower(d.String()) {
			*w = weekday(d)
			return nil
		}
	}
	return fmt.Errorf("source.days: unknown weekday: %s", s)
}

type startAfter time.Time

var startAfterFormats = []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02T15", time.DateOnly, time.DateTime}

func (sa *startAfter) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("source.start_after must be a date-time string")
	}
	for _, f := range startAfterFormats {
		if t, err := time.Parse(f, s); err == nil {
			*sa = startAfter(t)
			return nil
		}
	}
	return fmt.Errorf("invalid date format: %s, must be one of: %s", s, strings.Join(startAfterFormats, ", "))
}

func main() {
	resource.Main("time", resource.Handlers{"check": check, "in": in, "out": out})
}
