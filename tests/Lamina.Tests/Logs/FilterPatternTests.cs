using Lamina.Server.Logs;

namespace Lamina.Tests.Logs;

/// <summary>CloudWatch Logs filter patterns: terms, JSON conditions, %regex%, and the patterns we refuse.</summary>
public sealed class FilterPatternTests
{
    private static FilterPattern Parse(string? pattern)
    {
        Assert.True(FilterPattern.TryParse(pattern, out var filter, out var error), error);
        return filter;
    }

    private static string ParseError(string pattern)
    {
        Assert.False(FilterPattern.TryParse(pattern, out var filter, out var error));
        Assert.Null(filter);
        return error;
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\"\"")]
    public void TryParse_EmptyPattern_MatchesEverything(string? pattern)
    {
        var filter = Parse(pattern);

        Assert.True(filter.Matches("anything at all"));
        Assert.True(filter.Matches(""));
    }

    [Theory]
    [InlineData("ERROR", "[ERROR 400] BAD REQUEST", true)]
    [InlineData("ERROR", "an ERRORS list", true)] // substring, as CloudWatch
    [InlineData("ERROR", "error: lowercase", false)] // case-sensitive
    [InlineData("ERROR", "[INFO] fine", false)]
    [InlineData("ERROR 400", "[ERROR 400] BAD REQUEST", true)]
    [InlineData("ERROR 400", "400 then ERROR", true)] // order does not matter
    [InlineData("ERROR 400", "[ERROR 401] UNAUTHORIZED", false)] // every term must appear
    [InlineData("\"BAD REQUEST\"", "[ERROR 400] BAD REQUEST", true)]
    [InlineData("\"BAD REQUEST\"", "BAD  REQUEST", false)]
    [InlineData("\"ERROR 400\" BAD", "[ERROR 400] BAD REQUEST", true)]
    [InlineData("\"[ERROR]\"", "[ERROR] boom", true)]
    [InlineData("status=500", "request done status=500 in 3ms", true)] // punctuation accepted unquoted
    [InlineData("level=\"ERROR\"", "x level=\"ERROR\" y", true)] // balanced quotes inside a bare term are literal
    [InlineData("\"say \\\"hi\\\"\"", "they say \"hi\" loudly", true)] // \" inside a phrase
    [InlineData("\"C:\\temp\"", "wrote C:\\temp\\x", true)] // other backslashes are kept
    public void Matches_Terms(string pattern, string message, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(message));

    [Theory]
    [InlineData("ERROR -Exiting", "ERROR retrying", true)]
    [InlineData("ERROR -Exiting", "ERROR Exiting now", false)]
    [InlineData("ERROR -Exiting", "INFO retrying", false)]
    [InlineData("-DEBUG", "INFO hello", true)]
    [InlineData("-DEBUG", "DEBUG hello", false)]
    [InlineData("-\"health check\"", "GET /health 200 check", true)]
    [InlineData("-\"health check\"", "health check ok", false)]
    [InlineData("\"-1\"", "offset -1", true)] // a quoted leading dash is text, not an exclusion
    public void Matches_Exclusions(string pattern, string message, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(message));

    [Theory]
    [InlineData("?ERROR ?WARN", "WARN disk", true)]
    [InlineData("?ERROR ?WARN", "ERROR disk", true)]
    [InlineData("?ERROR ?WARN", "INFO disk", false)]
    [InlineData("?\"timed out\" ?Exception", "Task timed out after 3s", true)]
    [InlineData("disk ?ERROR ?WARN", "WARN disk", true)] // required terms and alternatives combine
    [InlineData("disk ?ERROR ?WARN", "WARN memory", false)]
    [InlineData("disk ?ERROR ?WARN", "INFO disk", false)]
    [InlineData("?ERROR ?WARN -retry", "WARN retry", false)]
    public void Matches_Alternatives(string pattern, string message, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(message));

    [Theory]
    [InlineData("\"abc", "unbalanced quote")]
    [InlineData("ERROR \"bad request", "unbalanced quote")]
    [InlineData("ab\"c", "unbalanced quote")]
    [InlineData("ERROR -", "'-' at offset 6 must be followed by a term")]
    [InlineData("? ERROR", "'?' at offset 0 must be followed by a term")]
    [InlineData("\"abc\"def", "expected a space after the closing quote at offset 5")]
    public void TryParse_MalformedTerms_Error(string pattern, string expected) =>
        Assert.Contains(expected, ParseError(pattern), StringComparison.Ordinal);

    [Theory]
    [InlineData("%ERR(OR)?%", "ERR 1", true)]
    [InlineData("%ERR(OR)?%", "ERROR 1", true)]
    [InlineData("%ERR(OR)?%", "err 1", false)]
    [InlineData("%^[hc]at%", "cat food", true)]
    [InlineData("%^[hc]at%", "the cat", false)]
    [InlineData("%10\\.0\\.0\\.1%", "from 10.0.0.1", true)]
    [InlineData("%10\\.0\\.0\\.1%", "from 10x0.0.1", false)]
    public void Matches_Regex(string pattern, string message, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(message));

    [Theory]
    [InlineData("%(abc%")]
    [InlineData("%(a)\\1%")] // backreferences have no linear-time engine
    public void TryParse_BadRegex_Error(string pattern) =>
        Assert.Contains("invalid regular expression", ParseError(pattern), StringComparison.Ordinal);

    private const string Event = """
        {"level":"ERROR","msg":"upstream timeout after 3s","latency":250,"ratio":1.0,"ok":false,"retried":true,
         "trace":null,"status":404,"user":{"id":7,"name":"ana","tags":["admin","beta"]},
         "items":[{"sku":"A-1","qty":2},{"sku":"B-2","qty":5}],"@timestamp":"2024-05-01","x-request-id":"r1"}
        """;

    [Theory]
    [InlineData("{ $.level = \"ERROR\" }", true)]
    [InlineData("{ $.level = \"WARN\" }", false)]
    [InlineData("{$.level=\"ERROR\"}", true)] // spaces are optional
    [InlineData("{ $.level = ERROR }", true)] // bare word
    [InlineData("{ $.level = error }", false)] // case-sensitive
    [InlineData("{ $.level != \"WARN\" }", true)]
    [InlineData("{ $.level != ERROR }", false)]
    [InlineData("{ $.msg = \"*timeout*\" }", true)]
    [InlineData("{ $.msg = \"upstream*\" }", true)]
    [InlineData("{ $.msg = \"*timeout\" }", false)] // a wildcard spans only where it is written
    [InlineData("{ $.msg = \"timeout\" }", false)] // no wildcard: the whole value must equal
    [InlineData("{ $.msg != \"*timeout*\" }", false)]
    [InlineData("{ $.user.name = ana }", true)]
    [InlineData("{ $.user.tags[1] = beta }", true)]
    [InlineData("{ $.user.tags[0] = beta }", false)]
    [InlineData("{ $.user.tags[2] = beta }", false)] // out of range
    [InlineData("{ $.items[1].sku = \"B-2\" }", true)]
    [InlineData("{ $.items[1].qty > 4 }", true)]
    [InlineData("{ $.@timestamp = \"2024-*\" }", true)]
    [InlineData("{ $.x-request-id = r1 }", true)]
    [InlineData("{ $.msg = %time(d)?out% }", true)]
    [InlineData("{ $.msg = %^timeout% }", false)]
    public void Matches_JsonStrings(string pattern, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(Event));

    [Theory]
    [InlineData("{ $.latency = 250 }", true)]
    [InlineData("{ $.latency = 250.0 }", true)] // numbers compare as numbers
    [InlineData("{ $.latency = 2.5e2 }", true)]
    [InlineData("{ $.latency != 250 }", false)]
    [InlineData("{ $.latency != 100 }", true)]
    [InlineData("{ $.latency > 100 }", true)]
    [InlineData("{ $.latency > 250 }", false)]
    [InlineData("{ $.latency >= 250 }", true)]
    [InlineData("{ $.latency < 250 }", false)]
    [InlineData("{ $.latency <= 250 }", true)]
    [InlineData("{ $.latency < -1 }", false)]
    [InlineData("{ $.ratio = 1 }", true)]
    [InlineData("{ $.user.id = 7 }", true)]
    [InlineData("{ $.status = 4* }", true)] // wildcard over a number's text
    [InlineData("{ $.status = 5* }", false)]
    [InlineData("{ $.status = \"404\" }", true)]
    [InlineData("{ $.level > 1 }", false)] // relational operators need a number field
    [InlineData("{ $.missing < 1 }", false)]
    public void Matches_JsonNumbers(string pattern, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(Event));

    [Theory]
    [InlineData("{ $.trace IS NULL }", true)]
    [InlineData("{ $.level IS NULL }", false)]
    [InlineData("{ $.missing IS NULL }", false)] // IS NULL needs the field, with a null value
    [InlineData("{ $.retried IS TRUE }", true)]
    [InlineData("{ $.ok IS TRUE }", false)]
    [InlineData("{ $.ok IS FALSE }", true)]
    [InlineData("{ $.ok is false }", true)] // keywords are case-insensitive
    [InlineData("{ $.retried = true }", true)]
    [InlineData("{ $.ok = true }", false)]
    [InlineData("{ $.trace = null }", true)]
    [InlineData("{ $.missing NOT EXISTS }", true)]
    [InlineData("{ $.level NOT EXISTS }", false)]
    [InlineData("{ $.level.deeper NOT EXISTS }", true)] // a path through a string resolves to nothing
    [InlineData("{ $.user.tags[9] NOT EXISTS }", true)]
    [InlineData("{ $.missing != \"x\" }", false)] // a missing field matches no comparison, != included
    [InlineData("{ $.user = \"*\" }", false)] // objects equal nothing
    public void Matches_JsonChecks(string pattern, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(Event));

    [Theory]
    [InlineData("{ ($.level = \"ERROR\") && ($.latency > 100) }", true)]
    [InlineData("{ ($.level = \"ERROR\") && ($.latency > 1000) }", false)]
    [InlineData("{ $.level = \"ERROR\" && $.latency > 100 }", true)] // parentheses are optional
    [InlineData("{ ($.level = \"WARN\") || ($.latency > 100) }", true)]
    [InlineData("{ ($.level = \"WARN\") || ($.latency > 1000) }", false)]
    [InlineData("{ $.level = WARN || $.ok IS FALSE && $.status = 404 }", true)] // && binds tighter than ||
    [InlineData("{ $.level = ERROR || $.ok IS TRUE && $.status = 500 }", true)]
    [InlineData("{ ($.level = ERROR || $.ok IS TRUE) && $.status = 500 }", false)]
    [InlineData("{ (($.user.id = 7) && ($.user.name = ana)) || ($.missing NOT EXISTS && $.ok IS TRUE) }", true)]
    public void Matches_JsonCombinations(string pattern, bool expected) =>
        Assert.Equal(expected, Parse(pattern).Matches(Event));

    [Theory]
    [InlineData("ERROR upstream timeout")] // plain text
    [InlineData("{\"level\":\"ERROR\"")] // truncated JSON
    [InlineData("2024-05-01T00:00:00Z abc INFO {\"level\":\"ERROR\"}")] // JSON after a prefix is not a JSON event
    [InlineData("")]
    public void Matches_JsonPatternOnNonJsonMessage_NoMatch(string message) =>
        Assert.False(Parse("{ $.level = ERROR }").Matches(message));

    [Fact]
    public void Matches_JsonPattern_ToleratesSurroundingWhitespaceAndArrays()
    {
        Assert.True(Parse("{ $.level = ERROR }").Matches("  {\"level\":\"ERROR\"}\n"));
        Assert.True(Parse("{ $[1].level = ERROR }").Matches("[{},{\"level\":\"ERROR\"}]"));
    }

    [Theory]
    [InlineData("{ $.a = 1", "expected '}' at the end of the pattern")]
    [InlineData("{ }", "expected a selector such as $.field at offset 2")]
    [InlineData("{ a = 1 }", "expected a selector such as $.field at offset 2")]
    [InlineData("{ $ = 1 }", "expected '.field' or '[index]' after '$'")]
    [InlineData("{ $. = 1 }", "expected a property name after '.'")]
    [InlineData("{ $.a }", "expected =, !=, <, <=, >, >=, IS or NOT EXISTS at offset 6")]
    [InlineData("{ $.a EXISTS }", "expected =, !=, <, <=, >, >=, IS or NOT EXISTS")]
    [InlineData("{ $.a = }", "expected a value at offset 8")]
    [InlineData("{ $.a == 1 }", "expected a value at offset 7")]
    [InlineData("{ $.a > abc }", "'>' compares numbers, but 'abc' is not a number")]
    [InlineData("{ $.a <= \"5\" }", "'<=' compares numbers")]
    [InlineData("{ $.a[x] = 1 }", "expected an array index such as [0]")]
    [InlineData("{ $.a[*] = 1 }", "expected an array index such as [0]")]
    [InlineData("{ $.a[0 = 1 }", "expected ']'")]
    [InlineData("{ $.a IS MAYBE }", "expected NULL, TRUE or FALSE after IS")]
    [InlineData("{ $.a NOT THERE }", "expected EXISTS after NOT")]
    [InlineData("{ ($.a = 1 }", "expected ')' at offset 11")]
    [InlineData("{ $.a = 1) }", "expected '}' at offset 9")]
    [InlineData("{ $.a = \"x }", "unbalanced quote")]
    [InlineData("{ $.a = %x }", "unbalanced '%'")]
    [InlineData("{ $.a = %(% }", "invalid regular expression")]
    [InlineData("{ $.a = 1 && }", "expected a selector")]
    [InlineData("{ $.a = 1 } ERROR", "unexpected text after '}' at offset 12")]
    public void TryParse_MalformedJson_Error(string pattern, string expected) =>
        Assert.Contains(expected, ParseError(pattern), StringComparison.Ordinal);

    [Fact]
    public void TryParse_SpaceDelimited_NotSupportedYet() =>
        Assert.Contains("not supported yet", ParseError("[ip, user, status=404, ...]"), StringComparison.Ordinal);

    [Fact]
    public void TryParse_LongerThanCloudWatchLimit_Error()
    {
        Assert.True(FilterPattern.TryParse(new string('a', FilterPattern.MaxLength), out _, out _));
        Assert.Contains("longer than 1024", ParseError(new string('a', FilterPattern.MaxLength + 1)), StringComparison.Ordinal);
    }

    [Fact]
    public void TryParse_DeeplyNestedParentheses_Parses()
    {
        var pattern = "{ " + new string('(', 400) + "$.status = 404" + new string(')', 400) + " }";

        Assert.True(Parse(pattern).Matches(Event));
    }
}
