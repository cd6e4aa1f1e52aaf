package smapi

import "bytes"

// errCode is an error answer of the Service Management API: a 3scale error
// code with its HTTP status. The zero value means "no error".
type errCode uint8

const (
	errNone errCode = iota
	// 403
	errProviderKeyInvalid
	errProviderKeyInvalidOrServiceMissing
	errServiceIDInvalid
	errServiceTokenInvalid
	errProviderKeyOrServiceTokenRequired
	errUserKeyInvalid
	errAuthenticationError
	errUsageValueInvalid
	// 404
	errApplicationNotFound
	errMetricInvalid
	// 422
	errServiceIDMissing
	errNotValidData
	errReferrerFilterInvalid
	// 400
	errBadRequest
	errContentTypeInvalid
	errTransactionsIsBlank
	errTransactionsFormatInvalid
	errTransactionsHasNilTransaction
	errEndUsersNoLongerSupported
	// Sluice's own, outside the 3scale table: transport-level limits and
	// availability.
	errRequestURITooLong     // 414
	errRequestEntityTooLarge // 413
	errRequestHeaderTooLarge // 431
	errNotFound              // 404 unknown path
	errMethodNotAllowed      // 405
	errServiceUnavailable    // 503
	errUsageOverflow         // 422: usage would pass the largest countable value
	// Codes of the report error log only (GET /services/{id}/errors.xml):
	// a batch transaction whose timestamp lies outside the window is not
	// recorded, the batch is. The status is what an answer would carry.
	errTransactionTimestampTooOld // 422
	errTransactionTimestampTooNew // 422
	numErrCodes
)

type codeInfo struct {
	name   string
	status int
}

var codeTable = [numErrCodes]codeInfo{
	errProviderKeyInvalid:                 {"provider_key_invalid", 403},
	errProviderKeyInvalidOrServiceMissing: {"provider_key_invalid_or_service_missing", 403},
	errServiceIDInvalid:                   {"service_id_invalid", 403},
	errServiceTokenInvalid:                {"service_token_invalid", 403},
	errProviderKeyOrServiceTokenRequired:  {"provider_key_or_service_token_required", 403},
	errUserKeyInvalid:                     {"user_key_invalid", 403},
	errAuthenticationError:                {"authentication_error", 403},
	errUsageValueInvalid:                  {"usage_value_invalid", 403},
	errApplicationNotFound:                {"application_not_found", 404},
	errMetricInvalid:                      {"metric_invalid", 404},
	errServiceIDMissing:                   {"service_id_missing", 422},
	errNotValidData:                       {"not_valid_data", 422},
	errReferrerFilterInvalid:              {"referrer_filter_invalid", 422},
	errBadRequest:                         {"bad_request", 400},
	errContentTypeInvalid:                 {"content_type_invalid", 400},
	errTransactionsIsBlank:                {"transactions_is_blank", 400},
	errTransactionsFormatInvalid:          {"transactions_format_invalid", 400},
	errTransactionsHasNilTransaction:      {"transactions_has_nil_transaction", 400},
	errEndUsersNoLongerSupported:          {"end_users_no_longer_supported", 400},
	errRequestURITooLong:                  {"request_uri_too_long", 414},
	errRequestEntityTooLarge:              {"request_entity_too_large", 413},
	errRequestHeaderTooLarge:              {"request_header_too_large", 431},
	errNotFound:                           {"not_found", 404},
	errMethodNotAllowed:                   {"method_not_allowed", 405},
	errServiceUnavailable:                 {"service_unavailable", 503},
	errUsageOverflow:                      {"usage_overflow", 422},
	errTransactionTimestampTooOld:         {"transaction_timestamp_too_old", 422},
	errTransactionTimestampTooNew:         {"transaction_timestamp_too_new", 422},
}

func (c errCode) String() string { return codeTable[c].name }

// Status returns the HTTP status of the error code.
func (c errCode) Status() int { return codeTable[c].status }

// denial is a reason an otherwise valid call is not authorized: a 409 with a
// <status> body rather than an <error>.
type denial uint8

const (
	denyNone denial = iota
	denyLimitsExceeded
	denyApplicationKeyInvalid
	denyApplicationKeyMissing // same code, its own reason text
	denyReferrerNotAllowed
	denyApplicationNotActive
	denyServiceNotActive
	denyRedirectURLInvalid
	denyRedirectURIInvalid
	numDenials
)

var denialCodes = [numDenials]string{
	denyLimitsExceeded:        "limits_exceeded",
	denyApplicationKeyInvalid: "application_key_invalid",
	denyApplicationKeyMissing: "application_key_invalid",
	denyReferrerNotAllowed:    "referrer_not_allowed",
	denyApplicationNotActive:  "application_not_active",
	denyServiceNotActive:      "service_not_active",
	denyRedirectURLInvalid:    "redirect_url_invalid",
	denyRedirectURIInvalid:    "redirect_uri_invalid",
}

func (d denial) String() string { return denialCodes[d] }

// appendReason appends the human-readable reason of d (unescaped); arg is the
// referrer or redirect URL the caller sent, where the text quotes it.
func appendReason(dst []byte, d denial, arg []byte) []byte {
	switch d {
	case denyLimitsExceeded:
		return append(dst, "usage limits are exceeded"...)
	case denyApplicationKeyInvalid:
		// 3scale quotes the key it was sent; a client secret does not
		// belong in an answer that gateways log.
		return append(dst, "application key is invalid"...)
	case denyApplicationKeyMissing:
		return append(dst, "application key is missing"...)
	case denyReferrerNotAllowed:
		if len(arg) == 0 {
			return append(dst, "referrer is missing"...)
		}
		dst = append(dst, `referrer "`...)
		dst = append(dst, arg...)
		return append(dst, `" is not allowed`...)
	case denyApplicationNotActive:
		return append(dst, "application is not active"...)
	case denyServiceNotActive:
		return append(dst, "service is not active"...)
	case denyRedirectURLInvalid, denyRedirectURIInvalid:
		if d == denyRedirectURLInvalid {
			dst = append(dst, `redirect_url "`...)
		} else {
			dst = append(dst, `redirect_uri "`...)
		}
		dst = append(dst, arg...)
		return append(dst, `" is invalid`...)
	}
	return dst
}

// appendMessage appends the human-readable text of error c (unescaped). arg
// and arg2 are the caller-sent values some messages quote (an id, a metric
// name, a usage value). Secrets the caller sent (provider keys, service
// tokens, user keys) are never quoted back: answers end up in gateway logs.
func appendMessage(dst []byte, c errCode, arg, arg2 []byte) []byte {
	q := func(dst, s []byte) []byte {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	switch c {
	case errProviderKeyInvalid:
		return append(dst, "provider key is invalid"...)
	case errProviderKeyInvalidOrServiceMissing:
		return append(dst, "provider key invalid and/or service ID missing"...)
	case errServiceIDInvalid:
		dst = append(dst, "service id "...)
		dst = q(dst, arg)
		return append(dst, " is invalid"...)
	case errServiceTokenInvalid:
		dst = append(dst, "service token or service id "...)
		dst = q(dst, arg)
		return append(dst, " is invalid"...)
	case errProviderKeyOrServiceTokenRequired:
		return append(dst, "Provider key or service token are required"...)
	case errUserKeyInvalid:
		if len(arg) == 0 {
			return append(dst, "user key is missing"...)
		}
		return append(dst, "user key is invalid"...)
	case errAuthenticationError:
		return append(dst, "either app_id or user_key is allowed, not both"...)
	case errUsageValueInvalid:
		if len(bytes.TrimSpace(arg2)) == 0 {
			dst = append(dst, "usage value for metric "...)
			dst = q(dst, arg)
			return append(dst, " can not be empty"...)
		}
		dst = append(dst, "usage value "...)
		dst = q(dst, arg2)
		dst = append(dst, " for metric "...)
		dst = q(dst, arg)
		return append(dst, " is invalid"...)
	case errApplicationNotFound:
		dst = append(dst, "application with id="...)
		dst = q(dst, arg)
		return append(dst, " was not found"...)
	case errMetricInvalid:
		dst = append(dst, "metric "...)
		dst = q(dst, arg)
		return append(dst, " is invalid"...)
	case errServiceIDMissing:
		return append(dst, "Service ID is missing"...)
	case errNotValidData, errTransactionTimestampTooOld, errTransactionTimestampTooNew:
		if len(arg) > 0 {
			return append(dst, arg...)
		}
		return append(dst, "all data must be valid UTF8"...)
	case errReferrerFilterInvalid:
		return append(dst, "referrer filter can't be blank"...)
	case errBadRequest:
		if len(arg) > 0 {
			return append(dst, arg...)
		}
		return append(dst, "request contains syntax errors, should not be repeated without modification"...)
	case errContentTypeInvalid:
		dst = append(dst, "invalid Content-Type: "...)
		return append(dst, arg...)
	case errTransactionsIsBlank:
		return append(dst, "transactions parameter is blank"...)
	case errTransactionsFormatInvalid:
		return append(dst, "transactions format is invalid"...)
	case errTransactionsHasNilTransaction:
		return append(dst, "transactions has a nil transaction"...)
	case errEndUsersNoLongerSupported:
		return append(dst, "End-users are no longer supported, do not specify the user_id parameter"...)
	case errRequestURITooLong:
		return append(dst, "request URI is longer than 1048576 bytes"...)
	case errRequestEntityTooLarge:
		if len(arg) > 0 {
			return append(dst, arg...)
		}
		return append(dst, "request body is larger than 1048576 bytes"...)
	case errRequestHeaderTooLarge:
		return append(dst, "request headers are too large"...)
	case errNotFound:
		return append(dst, "no such endpoint"...)
	case errMethodNotAllowed:
		return append(dst, "method not allowed"...)
	case errServiceUnavailable:
		if len(arg) > 0 {
			return append(dst, arg...)
		}
		return append(dst, "backend is starting"...)
	case errUsageOverflow:
		// arg2 set: a batch report, arg the first transaction refused and
		// arg2 what became of the batch. Otherwise arg is the metric whose
		// sum passes.
		if len(arg2) > 0 {
			dst = append(dst, "transaction "...)
			dst = q(dst, arg)
			dst = append(dst, " was not recorded: its usage would take a counter past 9223372036854775807; "...)
			return append(dst, arg2...)
		}
		if len(arg) == 0 {
			return append(dst, "usage would take a counter past 9223372036854775807"...)
		}
		dst = append(dst, "usage of metric "...)
		dst = q(dst, arg)
		return append(dst, " summed with its children would pass 9223372036854775807"...)
	}
	return dst
}
