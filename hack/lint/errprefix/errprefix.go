// Package errprefix checks that an error message does not start with its
// own package's name: the caller adds the component ("apv: %w" in the
// agent), so a package that adds it too makes "apv: apv: render ...".
// Messages say what failed ("render vs %s: ..."), as the Go convention has
// it.
package errprefix

import (
	"go/ast"
	"go/constant"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
	"golang.org/x/tools/go/types/typeutil"
)

// Analyzer reports errors.New and fmt.Errorf messages that begin with the
// enclosing package's name and a colon, or repeat a word before a colon
// ("sync: sync: ...").
var Analyzer = &analysis.Analyzer{
	Name:     "errprefix",
	Doc:      "error messages do not start with their own package's name (callers add it) nor repeat a prefix",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

func run(pass *analysis.Pass) (any, error) {
	pkg := strings.TrimSuffix(pass.Pkg.Name(), "_test")
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	ins.Preorder([]ast.Node{(*ast.CallExpr)(nil)}, func(n ast.Node) {
		call := n.(*ast.CallExpr)
		fn, ok := typeutil.Callee(pass.TypesInfo, call).(*types.Func)
		if !ok || fn.Pkg() == nil || len(call.Args) == 0 {
			return
		}
		switch fn.Pkg().Path() + "." + fn.Name() {
		case "errors.New", "fmt.Errorf":
		default:
			return
		}
		tv := pass.TypesInfo.Types[call.Args[0]]
		if tv.Value == nil || tv.Value.Kind() != constant.String {
			return
		}
		msg := constant.StringVal(tv.Value)
		if pkg != "main" && strings.HasPrefix(msg, pkg+":") {
			pass.Reportf(call.Args[0].Pos(), "error message %q starts with its package's name: the caller adds the component, say what failed instead", msg)
			return
		}
		if first, rest, ok := strings.Cut(msg, ": "); ok && first != "" && !strings.Contains(first, "%") && strings.HasPrefix(rest, first+":") {
			pass.Reportf(call.Args[0].Pos(), "error message %q repeats %q", msg, first)
		}
	})
	return nil, nil
}
