// tlsclient: a TLS client built on Go's crypto/tls and net/http, for connscope's
// live tests. Standard library only; builds offline with Debian's golang-go:
//
//	GO111MODULE=off GOPROXY=off GOCACHE=<tmp> go build -o tlsclient main.go
//
// It makes -n connections to -addr, each a new TCP connection (keep-alives off),
// with -sni as the server name. In -mode http (default) each connection carries one
// GET https://<sni>/ through net/http (ALPN offers h2 and http/1.1, as Go services
// do); in -mode tls it only does the handshake and closes.
//
// Output: one JSON line per connection, then a summary line:
//
//	{"i":0,"local":"10.244.1.10:41234","ok":true,"version":"TLS1.3","alpn":"h2",
//	 "status":200,"ms":3.2,"error":""}
//	{"pid":123,"ok":3,"failed":0,"ports":[41234,...]}
//
// Exit status: 0 if every connection succeeded, 1 if any failed, 2 on bad usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type result struct {
	I       int     `json:"i"`
	Local   string  `json:"local"`
	OK      bool    `json:"ok"`
	Version string  `json:"version"`
	ALPN    string  `json:"alpn"`
	Status  int     `json:"status,omitempty"`
	Ms      float64 `json:"ms"`
	Error   string  `json:"error"`
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return ""
}

func main() {
	addr := flag.String("addr", "", "server address HOST:PORT to connect to (required)")
	sni := flag.String("sni", "", "TLS server name (default: the host of -addr)")
	caFile := flag.String("ca", "", "PEM file of CA certificates to trust (default: system roots)")
	insecure := flag.Bool("insecure", false, "do not verify the server's certificate")
	n := flag.Int("n", 1, "number of connections, each a new TCP connection")
	timeout := flag.Duration("timeout", 5*time.Second, "per-connection time limit")
	mode := flag.String("mode", "http", "http: one GET per connection; tls: handshake only")
	maxVer := flag.String("max-version", "1.3", "highest TLS version offered: 1.2 or 1.3")
	path := flag.String("path", "/", "http: request path")
	alpn := flag.String("alpn", "", "tls: protocols to offer in ALPN, comma-separated")
	flag.Parse()

	if *addr == "" || *n < 1 || (*mode != "http" && *mode != "tls") {
		flag.Usage()
		os.Exit(2)
	}
	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsclient: bad -addr:", err)
		os.Exit(2)
	}
	if *sni == "" {
		*sni = host
	}
	cfg := &tls.Config{ServerName: *sni, InsecureSkipVerify: *insecure}
	if *mode == "tls" && *alpn != "" {
		cfg.NextProtos = strings.Split(*alpn, ",")
	}
	switch *maxVer {
	case "1.2":
		cfg.MaxVersion = tls.VersionTLS12
	case "1.3":
		cfg.MaxVersion = tls.VersionTLS13
	default:
		fmt.Fprintln(os.Stderr, "tlsclient: -max-version is 1.2 or 1.3")
		os.Exit(2)
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tlsclient:", err)
			os.Exit(2)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "tlsclient: no certificate in", *caFile)
			os.Exit(2)
		}
		cfg.RootCAs = pool
	}

	// The dialer ignores the URL's host (the SNI name need not resolve) and
	// remembers each connection's local address.
	var mu sync.Mutex
	var lastLocal string
	dialer := &net.Dialer{Timeout: *timeout}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, *addr)
		if err == nil {
			mu.Lock()
			lastLocal = c.LocalAddr().String()
			mu.Unlock()
		}
		return c, err
	}

	enc := json.NewEncoder(os.Stdout)
	okCount, failed := 0, 0
	ports := []int{}
	for i := 0; i < *n; i++ {
		mu.Lock()
		lastLocal = ""
		mu.Unlock()
		r := result{I: i}
		t0 := time.Now()
		if *mode == "tls" {
			r = handshakeOnly(i, dial, cfg, *timeout)
		} else {
			// a new Transport per connection: nothing is reused, not even TLS sessions
			tr := &http.Transport{
				DialContext:         dial,
				TLSClientConfig:     cfg.Clone(),
				ForceAttemptHTTP2:   true,
				DisableKeepAlives:   true,
				TLSHandshakeTimeout: *timeout,
			}
			client := &http.Client{Transport: tr, Timeout: *timeout}
			url := "https://" + net.JoinHostPort(*sni, portStr) + *path
			resp, err := client.Get(url)
			if err != nil {
				r.Error = err.Error()
			} else {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
				r.OK = true
				r.Status = resp.StatusCode
				if resp.TLS != nil {
					r.Version = versionName(resp.TLS.Version)
					r.ALPN = resp.TLS.NegotiatedProtocol
				}
			}
			tr.CloseIdleConnections()
			mu.Lock()
			r.Local = lastLocal
			mu.Unlock()
		}
		r.Ms = float64(time.Since(t0).Microseconds()) / 1000
		if r.OK {
			okCount++
		} else {
			failed++
		}
		if _, p, err := net.SplitHostPort(r.Local); err == nil {
			if v, err := strconv.Atoi(p); err == nil {
				ports = append(ports, v)
			}
		}
		enc.Encode(r)
	}
	enc.Encode(map[string]interface{}{"pid": os.Getpid(), "ok": okCount, "failed": failed,
		"ports": ports})
	if failed > 0 {
		os.Exit(1)
	}
}

func handshakeOnly(i int, dial func(context.Context, string, string) (net.Conn, error),
	cfg *tls.Config, timeout time.Duration) result {
	r := result{I: i}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := dial(ctx, "tcp", "")
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Local = raw.LocalAddr().String()
	c := tls.Client(raw, cfg.Clone())
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		r.Error = err.Error()
		return r
	}
	st := c.ConnectionState()
	r.OK = true
	r.Version = versionName(st.Version)
	r.ALPN = st.NegotiatedProtocol
	return r
}
