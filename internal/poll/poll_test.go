package poll

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type recorder struct {
	testing.TB
	fatal []string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(f string, a ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(f, a...))
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	r := &recorder{TB: t}
	Every(time.Millisecond).Until(r, 5*time.Second, "the third call", func() (bool, string) {
		n++
		return n == 3, fmt.Sprint(n)
	})
	if n != 3 || len(r.fatal) != 0 {
		t.Errorf("calls %d, failures %q; want 3 calls and none", n, r.fatal)
	}
}

func TestUntilFailsWithTheLastDetail(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	took := Every(5*time.Millisecond).Until(r, 30*time.Millisecond, "never", func() (bool, string) {
		n++
		return false, fmt.Sprintf("attempt %d", n)
	})
	if len(r.fatal) != 1 {
		t.Fatalf("failures %q, want one", r.fatal)
	}
	if want := fmt.Sprintf("timed out after 30ms waiting for never; last: attempt %d", n); r.fatal[0] != want {
		t.Errorf("failure %q, want %q", r.fatal[0], want)
	}
	if took < 30*time.Millisecond || n < 2 {
		t.Errorf("gave up after %v and %d calls", took, n)
	}
}

func TestAdapters(t *testing.T) {
	if ok, d := NoError(func() error { return errors.New("not yet") })(); ok || d != "not yet" {
		t.Errorf("NoError(error) = %v, %q", ok, d)
	}
	if ok, d := NoError(func() error { return nil })(); !ok || d != "" {
		t.Errorf("NoError(nil) = %v, %q", ok, d)
	}
	if ok, d := Reason(func() string { return "still 2" })(); ok || d != "still 2" {
		t.Errorf("Reason(why) = %v, %q", ok, d)
	}
	r := &recorder{TB: t}
	Until(r, 10*time.Millisecond, "nothing said", func() (bool, string) { return false, "" })
	if len(r.fatal) != 1 || strings.Contains(r.fatal[0], "last:") {
		t.Errorf("failure without a detail: %q", r.fatal)
	}
}
