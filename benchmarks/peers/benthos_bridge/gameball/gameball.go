// Package gameball is what both Go bridge peers share with connector/providers/gameball.py and
// connector/raw.py: the X-GB-Signature check and the raw record's key and Kafka headers.
package gameball

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // Gameball's scheme is plain SHA-1, not our choice
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names as connector/raw.py defines them.
const (
	HeaderProvider    = "provider"
	HeaderTenant      = "tenant"
	HeaderReceivedAt  = "received-at"
	HeaderRequestID   = "request-id"
	HeaderContentType = "content-type"
	HeaderVerified    = "verified"
	// The provider's kept headers (Gameball.kept_headers), lower-cased.
	HeaderSignature = "x-gb-signature"
	HeaderVersion   = "x-gb-webhook-version"
)

// Verifier checks X-GB-Signature = SHA-1(body + ":" + secret), hex (any case) or base64 of the
// raw digest, compared in constant time (signature_encoding "auto").
//
// Not ported: the Python verifier's fallback to a JavaScript-style re-serialization of the body
// when the exact bytes fail (what Gameball's Node sample signs). It runs only for signatures that
// do not match the bytes, so it changes no figure of a benchmark that sends valid ones; a
// delivery signed over a re-serialized body is refused here and accepted by our bridge.
type Verifier struct {
	suffix []byte
}

// NewVerifier binds the verifier to one secret key.
func NewVerifier(secret string) *Verifier {
	return &Verifier{suffix: []byte(":" + secret)}
}

// Verify returns nil when `given` (the X-GB-Signature header value) signs body.
func (v *Verifier) Verify(body []byte, given string) error {
	given = strings.TrimSpace(given)
	if given == "" {
		return fmt.Errorf("missing X-GB-Signature header")
	}
	h := sha1.New() //nolint:gosec
	h.Write(body)
	h.Write(v.suffix)
	digest := h.Sum(nil)
	var hexBuf [40]byte
	hex.Encode(hexBuf[:], digest)
	ok := subtle.ConstantTimeCompare([]byte(strings.ToLower(given)), hexBuf[:]) == 1
	b64 := base64.StdEncoding.EncodeToString(digest)
	ok = subtle.ConstantTimeCompare([]byte(given), []byte(b64)) == 1 || ok
	if !ok {
		return fmt.Errorf("X-GB-Signature does not match the body")
	}
	return nil
}

// RequestIDs makes ids like connector/bridge/app.py's next_request_id: a random per-process
// prefix and a counter (Gameball sends no delivery id, so the request id is the record key).
type RequestIDs struct {
	prefix string
	n      atomic.Uint64
}

// NewRequestIDs starts a fresh id sequence with a random prefix.
func NewRequestIDs() *RequestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &RequestIDs{prefix: hex.EncodeToString(b[:])}
}

// Next returns the next request id.
func (r *RequestIDs) Next() string {
	return fmt.Sprintf("%s%016x", r.prefix, r.n.Add(1))
}

// Record is the raw record our bridge writes for a verified Gameball delivery (tenant none):
// key = request id, value = the exact body, headers as connector/raw.py's raw_headers.
func Record(topic, requestID string, body []byte, contentType, signature, version string) *kgo.Record {
	headers := []kgo.RecordHeader{
		{Key: HeaderProvider, Value: []byte("gameball")},
		{Key: HeaderTenant, Value: []byte{}},
		{Key: HeaderReceivedAt, Value: []byte(strconv.FormatInt(time.Now().UnixMilli(), 10))},
		{Key: HeaderRequestID, Value: []byte(requestID)},
		{Key: HeaderContentType, Value: []byte(contentType)},
		{Key: HeaderVerified, Value: []byte("true")},
		{Key: HeaderSignature, Value: []byte(signature)},
	}
	if version != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderVersion, Value: []byte(version)})
	}
	return &kgo.Record{Topic: topic, Key: []byte(requestID), Value: body, Headers: headers}
}

// ClientOptions are the producer settings of both peers, matching the connector's
// KafkaRawProducer: acks=all, idempotent (franz-go's default, stated anyway), no linger, no
// compression (franz-go would pick snappy, which the connector's aiokafka cannot read without
// an extra library, and which would make the peers' records smaller than ours).
func ClientOptions(brokers string, clientID string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ClientID(clientID),
	}
}
