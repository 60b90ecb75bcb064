package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cfgcluster/cfgerr"
)

// Client calls a node's HTTP API. Errors it returns carry a cfgerr code:
// the server's, or Unavailable when the node cannot be reached.
type Client struct {
	Endpoint string // http://127.0.0.1:7380
	Token    string // sent as Authorization: Bearer
	HTTP     *http.Client
}

// NewClient returns a client of the node at endpoint (a URL, or host:port
// for http://host:port) that presents token. The audit trail names the
// token's subject as the author of its changes.
func NewClient(endpoint, token string) *Client {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	return &Client{Endpoint: strings.TrimRight(endpoint, "/"), Token: token, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// identify adds who is asking: the token.
func (c *Client) identify(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// unreachable is the error of a request that got no answer; a refused
// connection says what usually causes it.
func (c *Client) unreachable(err error) error {
	msg := fmt.Sprintf("cannot reach %s: %v", c.Endpoint, err)
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		msg += " (is cfgnode running there? start one with: cfgnode --schema FILE; its API listens on 127.0.0.1:7380 by default)"
	case errors.As(err, &unknownCA):
		msg += " (trust the CA that signed the node's certificate: cfgadm config set-context NAME --ca-file CA.pem)"
	}
	return &cfgerr.Error{Code: cfgerr.Unavailable, Message: msg, Err: err}
}

// checkAPI refuses an answer that did not come from a cfgnode API: without
// it, an etcd client port's 404 would read as a missing key.
func (c *Client) checkAPI(resp *http.Response) error {
	if resp.Header.Get(VersionHeader) != "" {
		return nil
	}
	if resp.StatusCode == http.StatusBadRequest && strings.HasPrefix(c.Endpoint, "http://") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if bytes.Contains(b, []byte("HTTPS server")) {
			return cfgerr.Errorf(cfgerr.Unavailable, "", "endpoint", "%s serves HTTPS: use %s", c.Endpoint, "https://"+strings.TrimPrefix(c.Endpoint, "http://"))
		}
	}
	return cfgerr.Errorf(cfgerr.Unavailable, "", "endpoint",
		"%s is not a cfgnode API (it answered %s without the %s header); cfgnode's API listens on 127.0.0.1:7380 by default",
		c.Endpoint, resp.Status, VersionHeader)
}

// WhoAmI returns the caller's token, subject and grants.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var w WhoAmI
	return &w, c.do(ctx, http.MethodGet, "/v1/whoami", nil, &w)
}

// Tokens lists the tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) (*TokenList, error) {
	var l TokenList
	return &l, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &l)
}

// CreateToken makes a token; the answer holds it, this once.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*TokenCreated, error) {
	var t TokenCreated
	return &t, c.do(ctx, http.MethodPost, "/v1/tokens", req, &t)
}

// RevokeToken deletes a token: every node refuses it within a second.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil)
}

// ServiceAccounts lists the service accounts.
func (c *Client) ServiceAccounts(ctx context.Context) (*ServiceAccountList, error) {
	var l ServiceAccountList
	return &l, c.do(ctx, http.MethodGet, "/v1/service-accounts", nil, &l)
}

// CreateServiceAccount makes an etcd user for a service; its password is
// in the answer only.
func (c *Client) CreateServiceAccount(ctx context.Context, req ServiceAccountRequest) (*ServiceAccountCreated, error) {
	var sa ServiceAccountCreated
	return &sa, c.do(ctx, http.MethodPost, "/v1/service-accounts", req, &sa)
}

// DeleteServiceAccount deletes a service account: etcd refuses its
// credential from then on.
func (c *Client) DeleteServiceAccount(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/service-accounts/"+url.PathEscape(name), nil, nil)
}

// EncryptionKeys lists the data keys and what each seals.
func (c *Client) EncryptionKeys(ctx context.Context) (*EncryptionKeys, error) {
	var k EncryptionKeys
	return &k, c.do(ctx, http.MethodGet, "/v1/encryption-keys", nil, &k)
}

// RotateKey makes a new data key for a prefix: new values of its keys are
// sealed with it.
func (c *Client) RotateKey(ctx context.Context, req RotateKeyRequest) (*EncryptionKey, error) {
	var k EncryptionKey
	return &k, c.do(ctx, http.MethodPost, "/v1/encryption-keys", req, &k)
}

// ExportKeys returns the keyring file of a prefix's data keys, for a service.
func (c *Client) ExportKeys(ctx context.Context, req ExportKeysRequest) ([]byte, error) {
	var raw json.RawMessage
	return raw, c.do(ctx, http.MethodPost, "/v1/encryption-keys/export", req, &raw)
}

// RetireKey deletes a data key that nothing is sealed with any more.
func (c *Client) RetireKey(ctx context.Context, id, comment string) error {
	q := ""
	if comment != "" {
		q = "?" + url.Values{"comment": {comment}}.Encode()
	}
	return c.do(ctx, http.MethodDelete, "/v1/encryption-keys/"+url.PathEscape(id)+q, nil, nil)
}

// Rewrap wraps every data key with the node's current key-encryption key
// (Reencrypted.Resealed counts the keys rewrapped).
func (c *Client) Rewrap(ctx context.Context, req ReencryptRequest) (*Reencrypted, error) {
	var r Reencrypted
	return &r, c.do(ctx, http.MethodPost, "/v1/encryption-keys/rewrap", req, &r)
}

// Reencrypt re-seals every value not sealed with the newest key for it.
func (c *Client) Reencrypt(ctx context.Context, req ReencryptRequest) (*Reencrypted, error) {
	var r Reencrypted
	return &r, c.do(ctx, http.MethodPost, "/v1/encryption-keys/reencrypt", req, &r)
}

// Roles lists the built-in and custom roles.
func (c *Client) Roles(ctx context.Context) (*RoleList, error) {
	var l RoleList
	return &l, c.do(ctx, http.MethodGet, "/v1/roles", nil, &l)
}

// PutRole creates or replaces a custom role.
func (c *Client) PutRole(ctx context.Context, r Role) error {
	return c.do(ctx, http.MethodPost, "/v1/roles", r, nil)
}

// DeleteRole removes a custom role.
func (c *Client) DeleteRole(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/roles/"+url.PathEscape(name), nil, nil)
}

// Version returns the node's build, API and etcd versions.
func (c *Client) Version(ctx context.Context) (*VersionInfo, error) {
	var v VersionInfo
	return &v, c.do(ctx, http.MethodGet, "/v1/version", nil, &v)
}

// Get returns a key's value, at rev if rev > 0.
func (c *Client) Get(ctx context.Context, key string, rev int64) (*Value, error) {
	var v Value
	return &v, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(key)+revQuery(rev), nil, &v)
}

// Reveal returns a sensitive key's value in clear (Get redacts it): the
// caller needs read-sensitive on the key, and the read is audited with
// comment.
func (c *Client) Reveal(ctx context.Context, key string, rev int64, comment string) (*Value, error) {
	q := url.Values{"reveal": {"true"}}
	if rev > 0 {
		q.Set("revision", fmt.Sprint(rev))
	}
	if comment != "" {
		q.Set("comment", comment)
	}
	var v Value
	return &v, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(key)+"?"+q.Encode(), nil, &v)
}

// GetLinearizable returns a key's current value read through etcd's quorum
// (Get reads the node's cache, which may lag another node's write by ms).
func (c *Client) GetLinearizable(ctx context.Context, key string) (*Value, error) {
	var v Value
	return &v, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(key)+"?consistency=linearizable", nil, &v)
}

// List returns every key under prefix.
func (c *Client) List(ctx context.Context, prefix string, rev int64) (*ValueList, error) {
	q := url.Values{"prefix": {prefix}}
	if rev > 0 {
		q.Set("revision", strconv.FormatInt(rev, 10))
	}
	var l ValueList
	return &l, c.do(ctx, http.MethodGet, "/v1/keys?"+q.Encode(), nil, &l)
}

// Set writes one key.
func (c *Client) Set(ctx context.Context, key string, req SetRequest) (*WriteResult, error) {
	return c.SetWait(ctx, key, req, 0)
}

// SetWait writes one key, then waits up to wait for every live instance
// that reads it to apply the write (see WriteResult.Rollout).
func (c *Client) SetWait(ctx context.Context, key string, req SetRequest, wait time.Duration) (*WriteResult, error) {
	var r WriteResult
	return &r, c.do(ctx, http.MethodPut, "/v1/keys/"+url.PathEscape(key)+waitQuery(wait), req, &r)
}

func waitQuery(wait time.Duration) string {
	if wait <= 0 {
		return ""
	}
	return "?wait=" + wait.String()
}

// Delete removes a key's value: it falls back to its default.
func (c *Client) Delete(ctx context.Context, key, comment string) (*WriteResult, error) {
	return c.DeleteWith(ctx, key, comment, WriteOptions{})
}

// DeleteWith removes a key's value, with what to do if it needs approval.
func (c *Client) DeleteWith(ctx context.Context, key, comment string, opt WriteOptions) (*WriteResult, error) {
	var r WriteResult
	q := url.Values{}
	if comment != "" {
		q.Set("comment", comment)
	}
	if opt.NoPropose {
		q.Set("no_propose", "true")
	}
	if opt.Force {
		q.Set("force", "true")
	}
	path := "/v1/keys/" + url.PathEscape(key)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return &r, c.do(ctx, http.MethodDelete, path, nil, &r)
}

// Proposals lists proposals in a state ("" for all), newest first.
func (c *Client) Proposals(ctx context.Context, state string) (*ProposalList, error) {
	var l ProposalList
	q := ""
	if state != "" {
		q = "?" + url.Values{"state": {state}}.Encode()
	}
	return &l, c.do(ctx, http.MethodGet, "/v1/proposals"+q, nil, &l)
}

// Proposal returns a proposal with the current values of its keys.
func (c *Client) Proposal(ctx context.Context, id string) (*Proposal, error) {
	var p Proposal
	return &p, c.do(ctx, http.MethodGet, "/v1/proposals/"+url.PathEscape(id), nil, &p)
}

// Decide approves, rejects or withdraws a proposal (decision: "approve",
// "reject" or "withdraw").
func (c *Client) Decide(ctx context.Context, id, decision, comment string) (*Proposal, error) {
	var p Proposal
	return &p, c.do(ctx, http.MethodPost, "/v1/proposals/"+url.PathEscape(id)+"/"+decision, DecisionRequest{Comment: comment}, &p)
}

// Apply writes a batch: every change or none.
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (*WriteResult, error) {
	return c.ApplyWait(ctx, req, 0)
}

// ApplyWait writes a batch, then waits as SetWait does.
func (c *Client) ApplyWait(ctx context.Context, req ApplyRequest, wait time.Duration) (*WriteResult, error) {
	var r WriteResult
	return &r, c.do(ctx, http.MethodPost, "/v1/apply"+waitQuery(wait), req, &r)
}

// Maintenance opens (or, with At, schedules) a window.
func (c *Client) Maintenance(ctx context.Context, req MaintenanceRequest) (*Window, error) {
	var w Window
	return &w, c.do(ctx, http.MethodPost, "/v1/maintenance", req, &w)
}

// ExtendMaintenance moves a scope's window end later.
func (c *Client) ExtendMaintenance(ctx context.Context, scope string, d time.Duration) (*Window, error) {
	var w Window
	return &w, c.do(ctx, http.MethodPost, "/v1/maintenance/"+url.PathEscape(scope)+"/extend", ExtendRequest{Duration: d.String()}, &w)
}

// EndMaintenance closes a scope's window now.
func (c *Client) EndMaintenance(ctx context.Context, scope string) (*Window, error) {
	var w Window
	return &w, c.do(ctx, http.MethodDelete, "/v1/maintenance/"+url.PathEscape(scope), nil, &w)
}

// CancelMaintenance removes a scheduled window before it opens.
func (c *Client) CancelMaintenance(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/maintenance/scheduled/"+url.PathEscape(id), nil, nil)
}

// MaintenanceStatus returns a scope's window.
func (c *Client) MaintenanceStatus(ctx context.Context, scope string) (*MaintenanceStatus, error) {
	var s MaintenanceStatus
	return &s, c.do(ctx, http.MethodGet, "/v1/maintenance/"+url.PathEscape(scope), nil, &s)
}

// MaintenanceList returns the open and scheduled windows.
func (c *Client) MaintenanceList(ctx context.Context) (*MaintenanceList, error) {
	var l MaintenanceList
	return &l, c.do(ctx, http.MethodGet, "/v1/maintenance", nil, &l)
}

// Instances lists live instances, of one service or ("") all.
func (c *Client) Instances(ctx context.Context, service string) (*InstanceList, error) {
	var l InstanceList
	q := ""
	if service != "" {
		q = "?" + url.Values{"service": {service}}.Encode()
	}
	return &l, c.do(ctx, http.MethodGet, "/v1/instances"+q, nil, &l)
}

// Rollout shows which instances have applied revision rev.
func (c *Client) Rollout(ctx context.Context, rev int64) (*Rollout, error) {
	var r Rollout
	return &r, c.do(ctx, http.MethodGet, "/v1/rollout/"+strconv.FormatInt(rev, 10), nil, &r)
}

// History returns the newest revisions of a key, newest first: at most
// limit (0: the node's default of 100).
func (c *Client) History(ctx context.Context, key string, limit int) (*History, error) {
	var h History
	return &h, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(key)+"/history?limit="+strconv.Itoa(limit), nil, &h)
}

// Diff compares a key at two revisions (0: now).
func (c *Client) Diff(ctx context.Context, key string, from, to int64) (*Diff, error) {
	var d Diff
	q := url.Values{"from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}}
	return &d, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(key)+"/diff?"+q.Encode(), nil, &d)
}

// Rollback writes old values back as a new change.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest) (*WriteResult, error) {
	var r WriteResult
	return &r, c.do(ctx, http.MethodPost, "/v1/rollback", req, &r)
}

// Schema returns the active schema document.
func (c *Client) Schema(ctx context.Context) (*Schema, error) {
	var s Schema
	return &s, c.do(ctx, http.MethodGet, "/v1/schema", nil, &s)
}

// ApplySchema replaces the schema.
func (c *Client) ApplySchema(ctx context.Context, req SchemaRequest) (*WriteResult, error) {
	var r WriteResult
	return &r, c.do(ctx, http.MethodPut, "/v1/schema", req, &r)
}

// ValidateSchema checks a document against the stored values, writing nothing.
func (c *Client) ValidateSchema(ctx context.Context, req SchemaRequest) (*Validation, error) {
	var v Validation
	return &v, c.do(ctx, http.MethodPost, "/v1/schema/validate", req, &v)
}

// Audit returns audit records, newest first.
func (c *Client) Audit(ctx context.Context, key string, before int64, limit int) (*AuditList, error) {
	q := url.Values{}
	if key != "" {
		q.Set("key", key)
	}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var l AuditList
	return &l, c.do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &l)
}

func revQuery(rev int64) string {
	if rev > 0 {
		return "?revision=" + strconv.FormatInt(rev, 10)
	}
	return ""
}

// EvaluateFlag evaluates a feature flag for an evaluation context through
// the node's OFREP endpoint; an evaluation that fails (the flag is missing,
// its targeting is broken) is an answer too, with its error code.
func (c *Client) EvaluateFlag(ctx context.Context, key string, evalCtx map[string]any) (*FlagEvaluation, error) {
	var out FlagEvaluation
	return &out, c.do(ctx, http.MethodPost, "/ofrep/v1/evaluate/flags/"+url.PathEscape(key), FlagEvaluationRequest{Context: evalCtx}, &out)
}

// FlagUsage returns each flag's evaluations across the live instances.
func (c *Client) FlagUsage(ctx context.Context) (*FlagUsageList, error) {
	var out FlagUsageList
	return &out, c.do(ctx, http.MethodGet, "/v1/flags/usage", nil, &out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return cfgerr.Wrap(cfgerr.Invalid, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Endpoint+path, body)
	if err != nil {
		return cfgerr.Errorf(cfgerr.Invalid, "", "endpoint", "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	c.identify(req)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	if err := c.checkAPI(resp); err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: fmt.Sprintf("reading the answer of %s: %v", c.Endpoint, err), Err: err}
	}
	if resp.StatusCode >= 300 {
		if ev, ok := out.(*FlagEvaluation); ok && json.Unmarshal(data, ev) == nil && ev.ErrorCode != "" {
			return nil // OFREP answers a failed evaluation with 400 or 404: an answer all the same
		}
		return errorOf(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return cfgerr.Errorf(cfgerr.Internal, "", "", "malformed answer from %s: %v", c.Endpoint, err)
	}
	return nil
}

func (e Error) toError() error {
	if len(e.Problems) > 1 {
		errs := make([]error, len(e.Problems))
		for i, p := range e.Problems {
			errs[i] = p.toError()
		}
		return errors.Join(errs...)
	}
	return &cfgerr.Error{Code: cfgerr.Code(e.Code), Key: e.Key, Field: e.Field, Message: e.Message}
}

// ErrorOf is the wire form of err: the first coded error at the top, every
// one in Problems when there are several.
func ErrorOf(err error) Error {
	all := cfgerr.All(err)
	if len(all) == 0 {
		return Error{}
	}
	out := wireError(all[0])
	if len(all) > 1 {
		for _, e := range all {
			out.Problems = append(out.Problems, wireError(e))
		}
	}
	return out
}

func wireError(e *cfgerr.Error) Error {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return Error{Code: string(e.Code), Message: msg, Key: e.Key, Field: e.Field}
}

// errorOf turns an error answer into a coded error: the node's own, or one
// coded by the status when the body is not an api.Error.
func errorOf(resp *http.Response, data []byte) error {
	var e Error
	if json.Unmarshal(data, &e) != nil || e.Code == "" {
		return cfgerr.Errorf(codeOfStatus(resp.StatusCode), "", "", "%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return e.toError()
}

// stream sends a request whose answer is a long body (a watch, a
// snapshot): no client timeout, and an error answer already decoded.
func (c *Client) stream(req *http.Request) (*http.Response, error) {
	c.identify(req)
	transport := http.DefaultTransport
	if c.HTTP != nil && c.HTTP.Transport != nil {
		transport = c.HTTP.Transport
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	if err := c.checkAPI(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return nil, errorOf(resp, data)
	}
	return resp, nil
}

func codeOfStatus(status int) cfgerr.Code {
	for _, c := range []cfgerr.Code{cfgerr.Invalid, cfgerr.NotFound, cfgerr.Conflict, cfgerr.FailedPrecondition, cfgerr.Unavailable,
		cfgerr.Unauthenticated, cfgerr.Forbidden, cfgerr.TooMany} {
		if cfgerr.HTTPStatus(c) == status {
			return c
		}
	}
	return cfgerr.Internal
}

// Cluster returns every member's status and the active alarms.
func (c *Client) Cluster(ctx context.Context) (*ClusterStatus, error) {
	var s ClusterStatus
	return &s, c.do(ctx, http.MethodGet, "/v1/cluster", nil, &s)
}

// AddMember adds a member as a learner; the node promotes it once it caught up.
func (c *Client) AddMember(ctx context.Context, req MemberAddRequest) (*MemberAdded, error) {
	var m MemberAdded
	return &m, c.do(ctx, http.MethodPost, "/v1/members", req, &m)
}

// RemoveMember removes a member by its hex id or name.
func (c *Client) RemoveMember(ctx context.Context, idOrName string) error {
	return c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(idOrName), nil, nil)
}

// Defrag defragments every member in turn.
func (c *Client) Defrag(ctx context.Context) (*DefragResult, error) {
	var r DefragResult
	return &r, c.do(ctx, http.MethodPost, "/v1/defrag", nil, &r)
}

// Snapshot streams an etcd snapshot into w and returns its SHA-256 (hex),
// checked against the one the node computed.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint+"/v1/snapshot", nil)
	if err != nil {
		return "", cfgerr.Errorf(cfgerr.Invalid, "", "endpoint", "%v", err)
	}
	resp, err := c.stream(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), resp.Body); err != nil {
		return "", &cfgerr.Error{Code: cfgerr.Unavailable, Message: "the snapshot stream broke: " + err.Error(), Err: err}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want := resp.Trailer.Get(SnapshotSumTrailer); want != sum {
		return "", cfgerr.Errorf(cfgerr.Internal, "", "snapshot", "checksum mismatch: node sent %q, received %q", want, sum)
	}
	return sum, nil
}

// SnapshotSumTrailer carries the SHA-256 of GET /v1/snapshot's body.
const SnapshotSumTrailer = "X-Cfgcluster-Sha256"
