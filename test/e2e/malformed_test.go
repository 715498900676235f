package e2e

import "testing"

func (s *suite) malformed(t *testing.T) {}
