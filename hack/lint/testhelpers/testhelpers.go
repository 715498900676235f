// Package testhelpers keeps the tests on their one golden-file helper
// (internal/golden, which owns the -update flag) and their one polling
// helper (internal/poll): it reports an "update" flag defined elsewhere,
// and a hand-written wait loop (a loop that sleeps, compares the time with
// a deadline and ends early on a condition) in a function that takes a
// *testing.T, B or TB. A loop that only runs for a while (flapping a
// real every second for 16 s) is not a wait.
package testhelpers

import (
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
	"golang.org/x/tools/go/types/typeutil"
)

// Analyzer reports copies of the golden and polling helpers.
var Analyzer = &analysis.Analyzer{
	Name:     "testhelpers",
	Doc:      "golden files go through internal/golden and waits through internal/poll",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

const (
	goldenPkg = "github.com/arraynetworks/edgeagent/internal/golden"
	pollPkg   = "github.com/arraynetworks/edgeagent/internal/poll"
)

func run(pass *analysis.Pass) (any, error) {
	path := strings.TrimSuffix(pass.Pkg.Path(), "_test")
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	if path != goldenPkg {
		ins.Preorder([]ast.Node{(*ast.CallExpr)(nil)}, func(n ast.Node) {
			call := n.(*ast.CallExpr)
			fn, ok := typeutil.Callee(pass.TypesInfo, call).(*types.Func)
			if !ok || fn.Pkg() == nil || fn.Pkg().Path() != "flag" || !strings.HasPrefix(fn.Name(), "Bool") {
				return
			}
			for _, a := range call.Args {
				if tv := pass.TypesInfo.Types[a]; tv.Value != nil && tv.Value.Kind() == constant.String && constant.StringVal(tv.Value) == "update" {
					pass.Reportf(a.Pos(), "an -update flag of its own: golden files go through internal/golden (golden.Assert)")
				}
			}
		})
	}
	if path == pollPkg {
		return nil, nil
	}
	ins.WithStack([]ast.Node{(*ast.ForStmt)(nil), (*ast.RangeStmt)(nil)}, func(n ast.Node, push bool, stack []ast.Node) bool {
		if !push || !inTestFunc(pass, stack) {
			return true
		}
		if sleeps(pass, n) && comparesTime(pass, n) && waits(pass, n) {
			pass.Reportf(n.Pos(), "a hand-written wait loop: use internal/poll (poll.Until)")
		}
		return true
	})
	return nil, nil
}

// inTestFunc reports whether the innermost function declaration around
// the node takes a *testing.T, *testing.B or testing.TB.
func inTestFunc(pass *analysis.Pass, stack []ast.Node) bool {
	for i := len(stack) - 1; i >= 0; i-- {
		var ft *ast.FuncType
		switch f := stack[i].(type) {
		case *ast.FuncDecl:
			ft = f.Type
		case *ast.FuncLit:
			ft = f.Type
		default:
			continue
		}
		for _, p := range ft.Params.List {
			if isTesting(pass.TypesInfo.TypeOf(p.Type)) {
				return true
			}
		}
		if _, ok := stack[i].(*ast.FuncDecl); ok {
			return false
		}
	}
	return false
}

func isTesting(t types.Type) bool {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := t.(*types.Named)
	if !ok || n.Obj().Pkg() == nil || n.Obj().Pkg().Path() != "testing" {
		return false
	}
	switch n.Obj().Name() {
	case "T", "B", "TB":
		return true
	}
	return false
}

// sleeps reports whether loop calls time.Sleep (not inside a nested
// function literal, which runs elsewhere).
func sleeps(pass *analysis.Pass, loop ast.Node) bool {
	found := false
	ast.Inspect(loop, func(n ast.Node) bool {
		if _, ok := n.(*ast.FuncLit); ok {
			return false
		}
		if c, ok := n.(*ast.CallExpr); ok && isFunc(pass, c, "time", "Sleep") {
			found = true
		}
		return !found
	})
	return found
}

// comparesTime reports whether loop compares the clock with a deadline:
// t.After(...) / t.Before(...) on time.Now(), or time.Since / time.Until
// in a comparison.
func comparesTime(pass *analysis.Pass, loop ast.Node) bool {
	found := false
	ast.Inspect(loop, func(n ast.Node) bool {
		if _, ok := n.(*ast.FuncLit); ok {
			return false
		}
		switch e := n.(type) {
		case *ast.CallExpr:
			if sel, ok := e.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "After" || sel.Sel.Name == "Before") {
				if fn, ok := typeutil.Callee(pass.TypesInfo, e).(*types.Func); ok && fn.Pkg() != nil && fn.Pkg().Path() == "time" {
					found = true
				}
			}
		case *ast.BinaryExpr:
			switch e.Op {
			case token.LSS, token.GTR, token.LEQ, token.GEQ:
				for _, side := range []ast.Expr{e.X, e.Y} {
					if c, ok := side.(*ast.CallExpr); ok && (isFunc(pass, c, "time", "Since") || isFunc(pass, c, "time", "Until")) {
						found = true
					}
				}
			}
		}
		return !found
	})
	return found
}

func isFunc(pass *analysis.Pass, c *ast.CallExpr, pkg, name string) bool {
	fn, ok := typeutil.Callee(pass.TypesInfo, c).(*types.Func)
	return ok && fn.Pkg() != nil && fn.Pkg().Path() == pkg && fn.Name() == name
}

// waits reports whether loop can end on something other than the clock: a
// break or return in its body, or a loop condition other than a deadline
// alone (for !cond(), for m.Connected() && time.Since(t0) < d).
func waits(pass *analysis.Pass, loop ast.Node) bool {
	if f, ok := loop.(*ast.ForStmt); ok && f.Cond != nil && !isClockTest(pass, f.Cond) {
		return true
	}
	var body *ast.BlockStmt
	switch l := loop.(type) {
	case *ast.ForStmt:
		body = l.Body
	case *ast.RangeStmt:
		body = l.Body
	}
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		switch s := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.ReturnStmt:
			found = true
		case *ast.BranchStmt:
			// A break inside a nested select or switch ends only that.
			if s.Tok == token.BREAK || s.Tok == token.GOTO {
				found = true
			}
		}
		return !found
	})
	return found
}

// isClockTest reports whether e only compares the clock with a deadline.
func isClockTest(pass *analysis.Pass, e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return isClockTest(pass, e.X)
	case *ast.CallExpr:
		sel, ok := e.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "After" && sel.Sel.Name != "Before") {
			return false
		}
		fn, ok := typeutil.Callee(pass.TypesInfo, e).(*types.Func)
		return ok && fn.Pkg() != nil && fn.Pkg().Path() == "time"
	case *ast.BinaryExpr:
		switch e.Op {
		case token.LSS, token.GTR, token.LEQ, token.GEQ:
			for _, side := range []ast.Expr{e.X, e.Y} {
				if c, ok := side.(*ast.CallExpr); ok && (isFunc(pass, c, "time", "Since") || isFunc(pass, c, "time", "Until")) {
					return true
				}
			}
		}
	}
	return false
}
