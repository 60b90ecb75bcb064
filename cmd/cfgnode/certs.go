package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// certsCommand makes a development CA and a certificate for each named
// node, for a local cluster with TLS: not for production, where the
// operator's own CA signs them.
func certsCommand() *cli.Command {
	return &cli.Command{
		Name:  "certs",
		Usage: "make a development CA and TLS certificates for local nodes (not for production)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "./certs", Usage: "where to write ca.pem, and NAME.pem and NAME-key.pem for each node"},
			&cli.StringFlag{Name: "names", Value: "default", Usage: "comma-separated node names"},
			&cli.StringFlag{Name: "hosts", Value: "127.0.0.1,localhost", Usage: "comma-separated IP addresses and DNS names every certificate is valid for"},
			&cli.DurationFlag{Name: "valid-for", Value: 365 * 24 * time.Hour, Usage: "how long the certificates last"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			caKey, caCert, err := makeCA(c.Duration("valid-for"))
			if err != nil {
				return err
			}
			if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caCert.Raw, 0o644); err != nil {
				return err
			}
			for _, name := range list(c.String("names")) {
				der, key, err := makeCert(name, list(c.String("hosts")), caCert, caKey, c.Duration("valid-for"))
				if err != nil {
					return err
				}
				kb, err := x509.MarshalECPrivateKey(key)
				if err != nil {
					return err
				}
				if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
					return err
				}
				if err := writePEM(filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kb, 0o600); err != nil {
					return err
				}
			}
			fmt.Printf("wrote %s/ca.pem and a certificate for %s, valid for %s; start a node with\n"+
				"  cfgnode --cert-file %s/NAME.pem --key-file %s/NAME-key.pem --trusted-ca-file %s/ca.pem ...\n",
				dir, strings.Join(list(c.String("names")), ", "), c.String("hosts"), dir, dir, dir)
			return nil
		},
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func makeCA(validFor time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "cfgcluster development CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func makeCert(name string, hosts []string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, validFor time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return der, key, err
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}
