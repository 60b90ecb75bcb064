// Package clientconfig is cfgadm's config file, as kubeconfig is kubectl's:
// named contexts, each a node's endpoint with its credentials, and the
// current one. cfgadm reads and changes it; cfgnode adds a context for
// itself at its first start, so a newcomer's first command needs no setup.
package clientconfig

import (
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"cfgcluster/cfgerr"
)

// File is the config file. It lives at $CFGADM_CONFIG, else
// $XDG_CONFIG_HOME/cfgadm/config.yaml (~/.config/cfgadm/config.yaml).
type File struct {
	CurrentContext string    `yaml:"current-context,omitempty"`
	Contexts       []Context `yaml:"contexts"`
}

// Context is one context. TokenFile and CAFile are read when used.
type Context struct {
	Name      string `yaml:"name"`
	Endpoint  string `yaml:"endpoint"`
	Token     string `yaml:"token,omitempty"`
	TokenFile string `yaml:"token-file,omitempty"`
	CAFile    string `yaml:"ca-file,omitempty"`   // the CA of the node's certificate (https)
	CertFile  string `yaml:"cert-file,omitempty"` // a client certificate, for nodes that ask for one
	KeyFile   string `yaml:"key-file,omitempty"`
}

// Path is where the config file is.
func Path() string {
	if p := os.Getenv("CFGADM_CONFIG"); p != "" {
		return p
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "cfgadm", "config.yaml")
}

// Load reads the config file; a missing file is an empty config.
func Load() (*File, error) {
	path := Path()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return &File{}, nil
	}
	if err != nil {
		return nil, err
	}
	var cfg File
	d := yaml.NewDecoder(strings.NewReader(string(data)))
	d.KnownFields(true)
	if err := d.Decode(&cfg); err != nil && err.Error() != "EOF" {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "config", "%s: %v", path, err)
	}
	return &cfg, nil
}

// Save writes the config file, readable by its owner alone (it may hold
// tokens), through a temporary file so a crash never leaves half of one.
func (cfg *File) Save() error {
	path := Path()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Find returns the context named name, or nil.
func (cfg *File) Find(name string) *Context {
	for i := range cfg.Contexts {
		if cfg.Contexts[i].Name == name {
			return &cfg.Contexts[i]
		}
	}
	return nil
}

// Put sets the context c.Name to c, adding it if there is none.
func (cfg *File) Put(c Context) {
	if ctx := cfg.Find(c.Name); ctx != nil {
		*ctx = c
		return
	}
	cfg.Contexts = append(cfg.Contexts, c)
}

// AddContext sets the context c.Name to c, adding it if there is none, and
// makes it current if no context is, or if the current one is for the same
// endpoint (a node started anew on that address). cfgnode calls it at its
// start.
func AddContext(c Context) error {
	cfg, err := Load()
	if err != nil {
		return err
	}
	cfg.Put(c)
	if cur := cfg.Find(cfg.CurrentContext); cur == nil || cur.Endpoint == c.Endpoint {
		cfg.CurrentContext = c.Name
	}
	return cfg.Save()
}
