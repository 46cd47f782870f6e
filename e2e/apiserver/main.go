// Command e2e-apiserver runs a real kube-apiserver (k8s.io/kubernetes, in-process)
// backed by an embedded etcd, both bound to 127.0.0.1 only, for end-to-end tests.
//
//	e2e-apiserver --state-dir DIR [--port N] [--kubeconfig PATH] [--keep-data] [--service-accounts] [-- extra kube-apiserver flags]
//
// It generates a fresh CA, serving certificate, admin client certificate (group
// system:masters) and service-account key under DIR/pki, wipes and starts etcd in
// DIR/etcd, starts kube-apiserver with RBAC, writes an admin kubeconfig and prints
// "READY <kubeconfig>" on stdout once /readyz answers "ok". SIGTERM/SIGINT stop the
// apiserver and then etcd; the process exits 0 after a clean shutdown.
//
// With --keep-data a restart is the same cluster: the etcd data, the certificates and the
// ports of the previous run in DIR are reused (ports recorded in DIR/ports), so clients
// started against the first run reconnect to the second with their kubeconfig unchanged.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // CronJob time zones, as in cmd/kube-apiserver

	"go.etcd.io/etcd/server/v3/embed"

	_ "k8s.io/component-base/logs/json/register"          // as in cmd/kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as in cmd/kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/version"  // as in cmd/kube-apiserver
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	serviceCIDR = "10.0.0.0/24" // never routed; only the "kubernetes" Service gets 10.0.0.1
	saIssuer    = "https://kubernetes.default.svc.cluster.local"
	readyWait   = 170 * time.Second
	stopWait    = 30 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	stateDir := flag.String("state-dir", "", "directory for etcd data, certificates and the kubeconfig (required)")
	port := flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 = pick a free one)")
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig (default STATE_DIR/kubeconfig)")
	etcdLog := flag.String("etcd-log-level", "error", "embedded etcd log level (debug, info, warn, error)")
	serviceAccounts := flag.Bool("service-accounts", false, "enable the ServiceAccount admission plugin (only where a controller-manager creates each namespace's default ServiceAccount)")
	keepData := flag.Bool("keep-data", false, "reuse the etcd data, certificates and ports of a previous run in --state-dir (a restart of the same cluster)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s --state-dir DIR [--port N] [--kubeconfig PATH] [--keep-data] [--service-accounts] [-- kube-apiserver flags...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *stateDir == "" {
		flag.Usage()
		return errors.New("--state-dir is required")
	}
	dir, err := filepath.Abs(*stateDir)
	if err != nil {
		return err
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(dir, "kubeconfig")
	}
	if *kubeconfig, err = filepath.Abs(*kubeconfig); err != nil {
		return err
	}

	// Our own signal watch. kube-apiserver installs its handler (first signal cancels
	// its context, a second one exits 1) when its command is created; until then this
	// one covers the etcd start. Both receive every signal.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	pki := filepath.Join(dir, "pki")
	for _, d := range []string{dir, pki} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	var ports portSet
	if *keepData {
		ports, _ = readPorts(filepath.Join(dir, "ports")) // none yet: first run
	}
	if *port != 0 {
		ports.API = *port
	}
	for _, p := range []*int{&ports.API, &ports.EtcdClient, &ports.EtcdPeer} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				return err
			}
		}
	}
	*port = ports.API
	if err := writePorts(filepath.Join(dir, "ports"), ports); err != nil {
		return err
	}
	var creds *credentials
	if *keepData {
		creds, err = readPKI(pki)
	}
	if creds == nil || err != nil {
		if creds, err = writePKI(pki); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
	}

	// etcd: fresh data every start (each run is a new, empty cluster), unless --keep-data.
	etcdDir := filepath.Join(dir, "etcd")
	if !*keepData {
		if err := os.RemoveAll(etcdDir); err != nil {
			return err
		}
	}
	etcd, etcdURL, err := startEtcd(etcdDir, *etcdLog, ports.EtcdClient, ports.EtcdPeer)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer stopEtcd(etcd)
	select {
	case <-etcd.Server.ReadyNotify():
	case err := <-etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "e2e-apiserver: %v before etcd was ready, stopping\n", s)
		return nil
	case <-time.After(60 * time.Second):
		return errors.New("etcd did not become ready in 60s")
	}
	fmt.Fprintf(os.Stderr, "e2e-apiserver: etcd ready at %s (data %s)\n", etcdURL, etcdDir)

	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(*port),
		"--cert-dir=" + filepath.Join(pki, "generated"),
		"--tls-cert-file=" + creds.servingCert,
		"--tls-private-key-file=" + creds.servingKey,
		"--client-ca-file=" + creds.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + creds.saPub,
		"--service-account-signing-key-file=" + creds.saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		// The endpoint reconciler would try to publish 127.0.0.1 as the endpoint of
		// the "kubernetes" Service, which validation rejects (loopback).
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if !*serviceAccounts {
		// Without a kube-controller-manager no "default" ServiceAccount is ever created;
		// the ServiceAccount admission plugin would reject every Pod.
		args = append(args, "--disable-admission-plugins=ServiceAccount")
	}
	args = append(args, flag.Args()...) // user flags last, so they win

	cmd := app.NewAPIServerCommand() // installs kube-apiserver's signal handler
	cmd.SetArgs(args)
	apiDone := make(chan error, 1)
	go func() { apiDone <- cmd.Execute() }()

	// Wait for /readyz, then announce.
	readyCtx, cancelReady := context.WithTimeout(context.Background(), readyWait)
	defer cancelReady()
	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(readyCtx, *port, creds) }()

	ready := false
	for {
		select {
		case err := <-readyErr:
			if err != nil {
				return fmt.Errorf("kube-apiserver not ready: %w", err)
			}
			if err := writeKubeconfig(*kubeconfig, *port, creds); err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			ready = true
			fmt.Fprintf(os.Stdout, "READY %s\n", *kubeconfig)
			readyErr = nil
		case err := <-apiDone:
			if err != nil {
				return fmt.Errorf("kube-apiserver: %w", err)
			}
			if !ready {
				return errors.New("kube-apiserver exited before it was ready")
			}
			fmt.Fprintln(os.Stderr, "e2e-apiserver: kube-apiserver stopped, stopping etcd")
			return nil
		case err := <-etcd.Err():
			return fmt.Errorf("etcd failed: %w", err)
		case s := <-sigs:
			// kube-apiserver got the same signal and is shutting down; give it a
			// bounded time, then stop etcd and leave regardless.
			fmt.Fprintf(os.Stderr, "e2e-apiserver: %v, stopping kube-apiserver\n", s)
			select {
			case err := <-apiDone:
				if err != nil {
					fmt.Fprintf(os.Stderr, "e2e-apiserver: kube-apiserver: %v\n", err)
				}
			case <-time.After(stopWait):
				fmt.Fprintf(os.Stderr, "e2e-apiserver: kube-apiserver did not stop in %v\n", stopWait)
			}
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portSet is what DIR/ports records, so a --keep-data restart listens where the last run did.
type portSet struct {
	API        int `json:"api"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

func readPorts(path string) (portSet, error) {
	var p portSet
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	err = json.Unmarshal(b, &p)
	return p, err
}

func writePorts(path string, p portSet) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func startEtcd(dataDir, logLevel string, clientPort, peerPort int) (*embed.Etcd, string, error) {
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}

	cfg := embed.NewConfig()
	cfg.Name = "e2e"
	cfg.Dir = dataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	cfg.LogLevel = logLevel
	cfg.LogOutputs = []string{"stderr"}
	// Test data: skip fsync, it dominates write latency on a VM disk. A --keep-data restart
	// still finds everything, since the page cache outlives the process (not the machine).
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	return e, clientURL.String(), nil
}

func stopEtcd(e *embed.Etcd) {
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
		fmt.Fprintln(os.Stderr, "e2e-apiserver: etcd stopped")
	case <-time.After(15 * time.Second):
		fmt.Fprintln(os.Stderr, "e2e-apiserver: etcd did not stop in 15s")
	}
}

type credentials struct {
	caCert, servingCert, servingKey, adminCert, adminKey, saKey, saPub string
	caPEM, adminCertPEM, adminKeyPEM                                   []byte
}

// credentialPaths names the credential files in dir (writePKI writes them, readPKI reads them).
func credentialPaths(dir string) *credentials {
	return &credentials{
		caCert:      filepath.Join(dir, "ca.crt"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
		adminCert:   filepath.Join(dir, "admin.crt"),
		adminKey:    filepath.Join(dir, "admin.key"),
		saKey:       filepath.Join(dir, "sa.key"),
		saPub:       filepath.Join(dir, "sa.pub"),
	}
}

// writePKI makes a new CA, a serving cert for 127.0.0.1/localhost/kubernetes.default,
// an admin client cert (O=system:masters) and an RSA service-account key pair.
func writePKI(dir string) (*credentials, error) {
	c := credentialPaths(dir)
	now := time.Now().Add(-time.Hour)
	notAfter := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "spo-e2e-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	c.caPEM = pemBlock("CERTIFICATE", caDER)
	if err := os.WriteFile(c.caCert, c.caPEM, 0o644); err != nil {
		return nil, err
	}

	leaf := func(tmpl *x509.Certificate, certPath, keyPath string) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = now, notAfter
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyPEM, err := privPEM(key)
		if err != nil {
			return nil, nil, err
		}
		certPEM := append(pemBlock("CERTIFICATE", der), c.caPEM...) // chain
		if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return nil, nil, err
		}
		return certPEM, keyPEM, nil
	}
	if _, _, err := leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}, c.servingCert, c.servingKey); err != nil {
		return nil, err
	}
	if c.adminCertPEM, c.adminKeyPEM, err = leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "spo-e2e-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, c.adminCert, c.adminKey); err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := privPEM(saKey)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.saKey, saKeyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.saPub, pemBlock("PUBLIC KEY", pubDER), 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// readPKI loads the credentials writePKI left in dir; an error when any file is missing.
func readPKI(dir string) (*credentials, error) {
	c := credentialPaths(dir)
	for _, f := range []string{c.servingCert, c.servingKey, c.saKey, c.saPub} {
		if _, err := os.Stat(f); err != nil {
			return nil, err
		}
	}
	var err error
	if c.caPEM, err = os.ReadFile(c.caCert); err != nil {
		return nil, err
	}
	if c.adminCertPEM, err = os.ReadFile(c.adminCert); err != nil {
		return nil, err
	}
	if c.adminKeyPEM, err = os.ReadFile(c.adminKey); err != nil {
		return nil, err
	}
	return c, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func privPEM(key crypto.PrivateKey) ([]byte, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pemBlock("EC PRIVATE KEY", der), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

func writeKubeconfig(path string, port int, c *credentials) error {
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: spo-e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority-data: %s
users:
- name: spo-e2e-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: spo-e2e
  context:
    cluster: spo-e2e
    user: spo-e2e-admin
    namespace: default
current-context: spo-e2e
`, port, b64(c.caPEM), b64(c.adminCertPEM), b64(c.adminKeyPEM))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waitReady polls https://127.0.0.1:port/readyz as the admin until it answers 200 "ok".
func waitReady(ctx context.Context, port int, c *credentials) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	pair, err := tls.X509KeyPair(c.adminCertPEM, c.adminKeyPEM)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:           nil, // never go through an HTTP(S)_PROXY for loopback
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"},
		},
	}
	u := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last /readyz answer: %s", ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
