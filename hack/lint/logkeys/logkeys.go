// Package logkeys checks the keys of log/slog calls: one case style
// (lowerCamelCase, as "retryIn" and "routerID") and errors always under
// "err", so a query for a log key finds every line that has it.
package logkeys

import (
	"go/ast"
	"go/constant"
	"go/types"
	"regexp"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
	"golang.org/x/tools/go/types/typeutil"
)

// Analyzer reports slog keys that are not lowerCamelCase and error values
// logged under another key than "err".
var Analyzer = &analysis.Analyzer{
	Name:     "logkeys",
	Doc:      "log/slog keys are lowerCamelCase and errors are logged under \"err\"",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

var lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// errorType is the error interface.
var errorType = types.Universe.Lookup("error").Type().Underlying().(*types.Interface)

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	ins.Preorder([]ast.Node{(*ast.CallExpr)(nil)}, func(n ast.Node) {
		call := n.(*ast.CallExpr)
		fn, ok := typeutil.Callee(pass.TypesInfo, call).(*types.Func)
		if !ok || fn.Pkg() == nil || fn.Pkg().Path() != "log/slog" {
			return
		}
		sig := fn.Type().(*types.Signature)
		params := sig.Params()
		// Attribute constructors: slog.String(key, v), slog.Any(key, v), ...
		if params.Len() >= 1 && params.At(0).Name() == "key" && len(call.Args) >= 1 {
			var val ast.Expr
			if len(call.Args) >= 2 && !sig.Variadic() {
				val = call.Args[1]
			}
			check(pass, call.Args[0], val)
		}
		// Key-value lists: the final ...any of Info, Error, With, Group, Log...
		if !sig.Variadic() || call.Ellipsis.IsValid() {
			return
		}
		last := params.At(params.Len() - 1).Type().(*types.Slice)
		if !types.Identical(last.Elem(), types.NewInterfaceType(nil, nil)) {
			return
		}
		args := call.Args[params.Len()-1:]
		for i := 0; i < len(args); {
			if isAttr(pass.TypesInfo.TypeOf(args[i])) {
				i++
				continue
			}
			var val ast.Expr
			if i+1 < len(args) {
				val = args[i+1]
			}
			check(pass, args[i], val)
			i += 2
		}
	})
	return nil, nil
}

// check reports key (when it is a constant) and its value.
func check(pass *analysis.Pass, key, val ast.Expr) {
	tv, ok := pass.TypesInfo.Types[key]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
		return
	}
	k := constant.StringVal(tv.Value)
	switch {
	case k == "error":
		pass.Reportf(key.Pos(), "log key %q: errors are logged under \"err\"", k)
		return
	case !lowerCamel.MatchString(k):
		pass.Reportf(key.Pos(), "log key %q is not lowerCamelCase (the one style of the project's keys)", k)
		return
	}
	if val == nil {
		return
	}
	t := pass.TypesInfo.TypeOf(val)
	// "cause" is a context's cause; a second error on a line ends in Err.
	if t != nil && types.Implements(t, errorType) && k != "err" && k != "cause" && !strings.HasSuffix(k, "Err") {
		pass.Reportf(key.Pos(), "an error logged under %q: use \"err\"", k)
	}
}

func isAttr(t types.Type) bool {
	n, ok := t.(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "log/slog" && n.Obj().Name() == "Attr"
}
