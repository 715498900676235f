package apv

import (
	"errors"
	"fmt"
)

func f(err error) []error {
	return []error{
		fmt.Errorf("apv: %w", err),        // want `starts with its package's name`
		errors.New("apv: not running"),    // want `starts with its package's name`
		fmt.Errorf("sync: sync: %w", err), // want `repeats "sync"`
		fmt.Errorf("render vs %s: %w", "x", err),
		fmt.Errorf("apv %s: %w", "apv-a", err),
		errors.New("device not reachable"),
	}
}
