// Command apvemu runs the APV cli_extend emulator (package apv/apvemu) on a
// fixed address, for trying the agent binary by hand:
//
//	go run ./hack/apvemu -listen 127.0.0.1:9997 -ca /tmp/apvemu-ca.pem
//
// then point apv.devices[].url at https://127.0.0.1:9997 with caFile
// /tmp/apvemu-ca.pem and credential files holding -user and -password. It
// prints the device's saved configuration every -every until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/arraynetworks/edgeagent/apv/apvemu"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9997", "address to listen on")
	user := flag.String("user", "admin", "accepted user name")
	pass := flag.String("password", "admin", "accepted password")
	ca := flag.String("ca", filepath.Join(os.TempDir(), "apvemu-ca.pem"), "where to write the server's certificate (the agent's caFile)")
	every := flag.Duration("every", 5*time.Second, "how often to print the saved configuration (0: never)")
	roUser := flag.String("scan-user", "", "also accept this read-only account (for apv.devices[].scanUsernameFile)")
	roPass := flag.String("scan-password", "", "password of -scan-user")
	normalize := flag.Bool("normalize", false, "print the configuration back differently from how it was sent (unquoted names, wider spacing, defaults, HTTP checks split over two lines)")
	flag.Parse()

	e, err := apvemu.Start(*listen, *user, *pass)
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	if *roUser != "" {
		e.AddReadOnlyUser(*roUser, *roPass)
	}
	e.SetNormalize(*normalize)
	pem, err := e.WriteCA(filepath.Dir(*ca))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(pem, *ca); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("apvemu: listening on %s, CA in %s\n", e.URL(), *ca)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *every <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := strings.Join(e.Saved(), "\n")
		if cur != last {
			fmt.Printf("--- saved configuration (%d requests so far)\n%s\n", len(e.Commands()), cur)
			last = cur
		}
	}
}
