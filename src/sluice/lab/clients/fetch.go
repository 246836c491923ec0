// Lab HTTPS client on Go net/http + crypto/tls:
// fetch --cafile CA [--gap S] [--http1] URL OUT [URL OUT ...]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func get(cl *http.Client, url, out string) error {
	r, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		return fmt.Errorf("status %d", r.StatusCode)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, r.Body)
	return err
}

func main() {
	var ca string
	gap := 0.0
	h2 := true
	var jobs [][2]string
	a := os.Args[1:]
	for i := 0; i < len(a); i++ {
		switch a[i] {
		case "--cafile":
			i++
			ca = a[i]
		case "--gap":
			i++
			gap, _ = strconv.ParseFloat(a[i], 64)
		case "--http1":
			h2 = false
		default:
			jobs = append(jobs, [2]string{a[i], a[i+1]})
			i++
		}
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	failed := 0
	for i, j := range jobs {
		if i > 0 {
			time.Sleep(time.Duration(gap * float64(time.Second)))
		}
		if err := get(cl, j[0], j[1]); err != nil {
			failed++
			fmt.Fprintln(os.Stderr, j[0], err)
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
}
