// A Go client that leaks its connections: leakConn dials and forgets the
// net.Conn, so once the server closes, each socket sits in CLOSE_WAIT.
//
//	leakclient ADDR COUNT    prints "LEAKED <n>", then sleeps until killed
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

var kept []net.Conn // referenced, so the garbage collector never closes them

//go:noinline
func leakConn(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	kept = append(kept, c) // the leak: c is never closed
	return nil
}

func main() {
	if len(os.Args) != 3 {
		os.Exit(2)
	}
	count, _ := strconv.Atoi(os.Args[2])
	n := 0
	for i := 0; i < count; i++ {
		if leakConn(os.Args[1]) == nil {
			n++
		}
	}
	fmt.Printf("LEAKED %d\n", n)
	time.Sleep(10 * time.Minute)
}
