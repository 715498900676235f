package a

import (
	"context"
	"errors"
	"log/slog"
)

func f(log *slog.Logger, err error) {
	log.Info("ok", "retryIn", 1, "routerID", "x", "err", err)
	log.Warn("bad case", "retry_in", 1)     // want `log key "retry_in" is not lowerCamelCase`
	log.Error("bad case", "Peer", "x")      // want `log key "Peer" is not lowerCamelCase`
	log.Error("error key", "error", err)    // want `log key "error": errors are logged under "err"`
	log.Error("error value", "reason", err) // want `an error logged under "reason": use "err"`
	log.Error("second error", "err", err, "closeErr", errors.New("x"))
	log.Info("cause", "cause", context.Cause(context.Background()))
	log.With("component", "x", "lease-name", "y").Info("x") // want `log key "lease-name" is not lowerCamelCase`
	slog.Info("attr", slog.String("node_name", "x"))        // want `log key "node_name" is not lowerCamelCase`
	slog.Info("attr", slog.Any("failure", err))             // want `an error logged under "failure": use "err"`
	log.Log(context.Background(), slog.LevelInfo, "m", slog.Int("n", 1), "deviceName", "a")
	log.InfoContext(context.Background(), "m", "Bad", 1) // want `log key "Bad" is not lowerCamelCase`
	args := []any{"any_key", 1}
	log.Info("spread", args...)
}
