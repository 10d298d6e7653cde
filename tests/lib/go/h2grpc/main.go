// h2grpc: a gRPC server and client built on grpc-go, for connscope's live tests
// and benchmarks of HTTP/2 connection reuse. It uses only Debian's packages and
// builds offline:
//
//	GO111MODULE=off GOPATH=<tmp>:/usr/share/gocode GOPROXY=off GOCACHE=<tmp> \
//	    go build -o h2grpc main.go
//
// (golang-go, golang-google-grpc-dev; tests/lib/h2peers.py's build_h2grpc does this.)
// The service is grpc.health.v1.Health/Check from grpc-go itself, so there is no
// protoc-generated code of our own. One binary plays both roles, so uprobes attached
// to its executable see the server and the client runs alike.
//
//	h2grpc server -addr IP:PORT [-cert F -key F] [-max-age D] [-max-age-grace D]
//	              [-max-run D]
//
// serves until SIGTERM/SIGINT or -max-run (default 10m), whichever comes first.
// With -cert/-key it speaks TLS through Go's crypto/tls (credentials.NewTLS, ALPN
// h2); without, h2c (gRPC's plaintext HTTP/2, prior knowledge). -max-age sets
// keepalive.ServerParameters.MaxConnectionAge: grpc-go then ends each connection
// that old with GOAWAY (and, after -max-age-grace, closes it). It prints
// "listening <addr>" once it accepts, and at exit one JSON line:
//
//	{"role":"server","pid":1,"conns":3,"rpcs":80,"reason":"signal"}
//
//	h2grpc client -addr IP:PORT [-ca F] [-servername NAME] -mode reuse|percall|deadline
//	              [-duration 4s] [-interval 50ms] [-timeout 2s]
//
// reuse: one ClientConn for the whole duration, a Health/Check call every
// interval; when the server ends a connection (GOAWAY), grpc-go reconnects by
// itself. deadline: the same ClientConn, but each call is a Health/Watch stream,
// which the server never ends: the call's -timeout expires after the first answer
// and grpc-go cancels the stream (RST_STREAM CANCEL), as a client deadline shorter
// than the server's answer does; such a call counts as ok. percall: a new ClientConn for every call (dial, call, Close). -ca makes it
// TLS (crypto/tls, the CA file as the only root, -servername as SNI and the name to
// verify); without -ca, h2c. At the end it prints one JSON line:
//
//	{"role":"client","pid":1,"mode":"reuse","tls":false,"calls":80,"ok":80,
//	 "failed":0,"conns":4,"local_ports":[41234,...],"first_error":""}
//
// conns counts the client transports that were established (stats.ConnBegin),
// local_ports their local ports, in order.
// Exit status: 0 if every call succeeded, 1 if any failed, 2 on bad usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// connCounter is a stats.Handler that counts transports (connections) and RPCs.
type connCounter struct {
	mu    sync.Mutex
	conns int
	rpcs  int
	ports []int
}

type connKey struct{}

func (c *connCounter) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connKey{}, info)
}

func (c *connCounter) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns++
	if info, ok := ctx.Value(connKey{}).(*stats.ConnTagInfo); ok && info != nil {
		if a, ok := info.LocalAddr.(*net.TCPAddr); ok {
			c.ports = append(c.ports, a.Port)
		}
	}
}

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (c *connCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		c.mu.Lock()
		c.rpcs++
		c.mu.Unlock()
	}
}

func (c *connCounter) snapshot() (int, int, []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conns, c.rpcs, append([]int{}, c.ports...)
}

func usage(msg string) {
	fmt.Fprintln(os.Stderr, "h2grpc: "+msg)
	fmt.Fprintln(os.Stderr, "usage: h2grpc server -addr IP:PORT [-cert F -key F] [-max-age D] [-max-run D]")
	fmt.Fprintln(os.Stderr, "       h2grpc client -addr IP:PORT [-ca F] [-servername N] -mode reuse|percall [-duration D] [-interval D]")
	os.Exit(2)
}

func printJSON(v interface{}) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func server(args []string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	addr := fs.String("addr", "", "IP:PORT to listen on")
	cert := fs.String("cert", "", "TLS certificate (PEM); with -key: TLS, else h2c")
	key := fs.String("key", "", "TLS private key (PEM)")
	maxAge := fs.Duration("max-age", 0, "MaxConnectionAge (0: none)")
	grace := fs.Duration("max-age-grace", 500*time.Millisecond, "MaxConnectionAgeGrace")
	maxRun := fs.Duration("max-run", 10*time.Minute, "exit after this long at most")
	fs.Parse(args)
	if *addr == "" || (*cert == "") != (*key == "") || fs.NArg() != 0 {
		usage("server needs -addr, and -cert with -key or neither")
	}

	counter := &connCounter{}
	opts := []grpc.ServerOption{grpc.StatsHandler(counter)}
	if *maxAge > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: *maxAge, MaxConnectionAgeGrace: *grace}))
	}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "h2grpc: load certificate:", err)
			os.Exit(1)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{pair}})))
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2grpc: listen:", err)
		os.Exit(1)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())

	reason := make(chan string, 2)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; reason <- "signal" }()
	go func() { time.Sleep(*maxRun); reason <- "max-run" }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	fmt.Printf("listening %s\n", lis.Addr())
	os.Stdout.Sync()

	why := ""
	select {
	case why = <-reason:
	case err := <-served:
		why = fmt.Sprintf("serve: %v", err)
	}
	// Stop, not GracefulStop: a client that keeps its connection open must not
	// hold the server up.
	srv.Stop()
	conns, rpcs, _ := counter.snapshot()
	printJSON(map[string]interface{}{"role": "server", "pid": os.Getpid(), "conns": conns,
		"rpcs": rpcs, "reason": why})
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "", "server IP:PORT")
	ca := fs.String("ca", "", "CA certificate (PEM) to trust; given: TLS, else h2c")
	sni := fs.String("servername", "", "TLS server name (SNI, verification); default: -addr's host")
	mode := fs.String("mode", "reuse", "reuse (one ClientConn), percall (one per call) or deadline (Watch until -timeout)")
	duration := fs.Duration("duration", 4*time.Second, "how long to make calls")
	interval := fs.Duration("interval", 50*time.Millisecond, "time between calls")
	timeout := fs.Duration("timeout", 2*time.Second, "per-call (and per-dial) time limit")
	fs.Parse(args)
	if *addr == "" || (*mode != "reuse" && *mode != "percall" && *mode != "deadline") ||
		fs.NArg() != 0 {
		usage("client needs -addr and -mode reuse|percall|deadline")
	}

	counter := &connCounter{}
	dialOpts := []grpc.DialOption{grpc.WithStatsHandler(counter)}
	if *ca != "" {
		pem, err := ioutil.ReadFile(*ca)
		if err != nil {
			fmt.Fprintln(os.Stderr, "h2grpc: read CA:", err)
			os.Exit(1)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "h2grpc: no certificate in", *ca)
			os.Exit(1)
		}
		name := *sni
		if name == "" {
			name, _, _ = net.SplitHostPort(*addr)
		}
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: pool, ServerName: name})))
	} else {
		dialOpts = append(dialOpts, grpc.WithInsecure())
	}

	dial := func() (*grpc.ClientConn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		return grpc.DialContext(ctx, *addr, append(dialOpts, grpc.WithBlock())...)
	}
	call := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		// WaitForReady: a call made while the channel reconnects after a GOAWAY
		// waits for the new connection instead of failing at once.
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{},
			grpc.WaitForReady(true))
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("status %v", resp.GetStatus())
		}
		return err
	}
	// A Watch that only its deadline ends: ok if the server answered first.
	watch := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		st, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{},
			grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		if _, err = st.Recv(); err != nil {
			return err
		}
		// grpc-go says DeadlineExceeded, or Canceled ("Stream has ended") when
		// its stream noticed the context first: the deadline either way, once
		// the context says so.
		_, err = st.Recv()
		<-ctx.Done()
		if c := status.Code(err); (c != codes.DeadlineExceeded && c != codes.Canceled) ||
			ctx.Err() != context.DeadlineExceeded {
			return fmt.Errorf("watch ended by %v (%v), not its deadline", err, ctx.Err())
		}
		return nil
	}

	calls, ok, failed := 0, 0, 0
	firstErr := ""
	note := func(err error) {
		calls++
		if err == nil {
			ok++
			return
		}
		failed++
		if firstErr == "" {
			firstErr = err.Error()
		}
	}

	var cc *grpc.ClientConn
	if *mode != "percall" {
		var err error
		if cc, err = dial(); err != nil {
			note(err)
		}
	}
	end := time.Now().Add(*duration)
	next := time.Now()
	for time.Now().Before(end) && (*mode == "percall" || cc != nil) {
		if *mode == "reuse" {
			note(call(cc))
		} else if *mode == "deadline" {
			note(watch(cc))
		} else {
			c, err := dial()
			if err == nil {
				err = call(c)
				c.Close()
			}
			note(err)
		}
		next = next.Add(*interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else {
			next = time.Now()
		}
	}
	if cc != nil {
		cc.Close()
	}
	conns, _, ports := counter.snapshot()
	printJSON(map[string]interface{}{"role": "client", "pid": os.Getpid(), "mode": *mode,
		"tls": *ca != "", "calls": calls, "ok": ok, "failed": failed, "conns": conns,
		"local_ports": ports, "first_error": firstErr})
	if failed > 0 {
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage("missing mode")
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	default:
		usage("unknown mode " + os.Args[1])
	}
}
