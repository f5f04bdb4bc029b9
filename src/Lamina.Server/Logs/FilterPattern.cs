using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Lamina.Server.Logs;

/// <summary>
/// A CloudWatch Logs filter pattern, as FilterLogEvents and <c>aws logs tail --filter-pattern</c> send it
/// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html). Three forms are supported:
/// <list type="bullet">
/// <item>terms: <c>ERROR "bad request" -Exiting ?WARN ?FATAL</c>, matched as case-sensitive substrings;</item>
/// <item>JSON: <c>{ ($.level = "ERROR") &amp;&amp; ($.latency &gt; 100) }</c>, on messages that are JSON documents;</item>
/// <item>regex: <c>%timed? ?out%</c>, the whole pattern between percent signs.</item>
/// </list>
/// Space-delimited patterns (<c>[ip, user, ...]</c>) are refused as not supported yet.
/// </summary>
internal sealed class FilterPattern
{
    /// <summary>FilterLogEvents' limit on filterPattern; it also bounds the parser's recursion on nested parentheses.</summary>
    public const int MaxLength = 1024;

    private static readonly FilterPattern All = new(static _ => true);

    /// <summary>Two-character operators first, so "&lt;=" is not read as "&lt;" followed by "=".</summary>
    private static readonly string[] Operators = ["!=", "<=", ">=", "=", "<", ">"];

    private readonly Func<string, bool> _matches;

    private FilterPattern(Func<string, bool> matches) => _matches = matches;

    public bool Matches(string message) => _matches(message);

    /// <summary>
    /// Parses <paramref name="pattern"/>; null, empty or whitespace matches every message. On failure
    /// <paramref name="error"/> says what is wrong and where (an offset into the pattern).
    /// </summary>
    public static bool TryParse(string? pattern, [NotNullWhen(true)] out FilterPattern? filter, [NotNullWhen(false)] out string? error)
    {
        filter = null;
        error = null;
        if (pattern is { Length: > MaxLength })
        {
            error = $"the pattern is longer than {MaxLength} characters";
            return false;
        }
        var text = pattern?.Trim() ?? "";
        // The parser unwinds with FormatException so that each grammar rule reads straight through; it is caught
        // only here, and nothing throws past TryParse.
        try
        {
            filter = text switch
            {
                "" => All,
                ['{', ..] => ParseJson(text),
                ['[', ..] => throw new FormatException("space-delimited patterns ([field, ...]) are not supported yet"),
                ['%', .., '%'] => ParseRegex(text[1..^1]),
                _ => ParseTerms(text),
            };
            return true;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return false;
        }
    }

    // --- Terms: all plain terms must appear, no -term may appear, and at least one ?term must appear (if any). ---

    private static FilterPattern ParseTerms(string text)
    {
        List<string> required = [], excluded = [], anyOf = [];
        var parser = new Parser(text);
        while (parser.SkipWhitespace())
        {
            var prefixAt = parser.Position;
            var terms = parser.TryConsume('-') ? excluded : parser.TryConsume('?') ? anyOf : required;
            if (parser.AtEnd || char.IsWhiteSpace(parser.Current))
            {
                throw new FormatException($"'{text[prefixAt]}' at offset {prefixAt} must be followed by a term");
            }
            terms.Add(parser.Current == '"' ? parser.ReadQuotedTerm() : parser.ReadBareTerm());
        }
        if (required.Count == 0 && excluded.Count == 0 && anyOf.Count == 0)
        {
            return All;
        }
        return new FilterPattern(message =>
            required.TrueForAll(term => message.Contains(term, StringComparison.Ordinal))
            && !excluded.Exists(term => message.Contains(term, StringComparison.Ordinal))
            && (anyOf.Count == 0 || anyOf.Exists(term => message.Contains(term, StringComparison.Ordinal))));
    }

    // --- Regex: %...% over the whole message. ---

    private static FilterPattern ParseRegex(string body)
    {
        var regex = CompileRegex(body);
        return new FilterPattern(regex.IsMatch);
    }

    /// <summary>
    /// NonBacktracking runs in time linear in the message, so a hostile pattern cannot stall the log scan; it rejects
    /// backreferences and lookarounds, which CloudWatch's regex subset does not have either.
    /// </summary>
    private static Regex CompileRegex(string body)
    {
        try
        {
            return new Regex(body, RegexOptions.NonBacktracking | RegexOptions.CultureInvariant);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw new FormatException($"invalid regular expression %{body}%: {e.Message}");
        }
    }

    // --- JSON: { condition } where conditions combine with &&, || and parentheses (&& binds tighter). ---

    private static FilterPattern ParseJson(string text)
    {
        var parser = new Parser(text);
        parser.Expect('{');
        var condition = parser.ParseOr();
        parser.SkipWhitespace();
        parser.Expect('}');
        if (parser.SkipWhitespace())
        {
            throw new FormatException($"unexpected text after '}}' at offset {parser.Position}");
        }
        return new FilterPattern(message => MatchesJson(message, condition));
    }

    private static bool MatchesJson(string message, Func<JsonElement, bool> condition)
    {
        // Most lines of a mixed log are plain text: reject them without paying for a JsonException each.
        var trimmed = message.AsSpan().TrimStart();
        if (trimmed.IsEmpty || (trimmed[0] != '{' && trimmed[0] != '['))
        {
            return false;
        }
        try
        {
            using var document = JsonDocument.Parse(message);
            return condition(document.RootElement);
        }
        catch (JsonException)
        {
            return false; // not JSON after all (or nested deeper than JsonDocument allows): no match, as in CloudWatch
        }
    }

    /// <summary>One step of a selector: a property name, or (when <c>Name</c> is null) an array index.</summary>
    private readonly record struct Step(string? Name, int Index);

    /// <summary>A comparison's right-hand side: text (with <c>*</c> wildcards), plus its number or regex when it is one.</summary>
    private sealed record Literal(string Text, double? Number, Regex? Regex);

    private static bool TryResolve(JsonElement root, Step[] path, out JsonElement value)
    {
        value = root;
        foreach (var step in path)
        {
            if (step.Name is not null)
            {
                if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty(step.Name, out value))
                {
                    return false;
                }
            }
            else if (value.ValueKind != JsonValueKind.Array || step.Index >= value.GetArrayLength())
            {
                return false;
            }
            else
            {
                value = value[step.Index];
            }
        }
        return true;
    }

    /// <summary>
    /// <c>=</c> for one field. A number literal against a number field compares numerically (so 1.0 equals 1). Otherwise
    /// the literal is matched against a string's value, or against the JSON text of a number, boolean or null (which is
    /// how <c>= true</c>, <c>= null</c> and <c>= 4*</c> on a status code work). Objects and arrays equal nothing.
    /// </summary>
    private static bool FieldEquals(JsonElement field, Literal literal)
    {
        if (literal.Number is { } number && field.ValueKind == JsonValueKind.Number)
        {
            return field.TryGetDouble(out var value) && value == number;
        }
        var text = field.ValueKind switch
        {
            JsonValueKind.String => field.GetString(),
            JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null => field.GetRawText(),
            _ => null,
        };
        return text is not null && (literal.Regex?.IsMatch(text) ?? WildcardMatch(text, literal.Text));
    }

    private static bool Compare(JsonElement field, string op, Literal literal)
    {
        if (op is "=" or "!=")
        {
            return FieldEquals(field, literal) == (op == "=");
        }
        // Relational operators are numeric only (the parser made sure the literal is a number).
        if (field.ValueKind != JsonValueKind.Number || !field.TryGetDouble(out var value))
        {
            return false;
        }
        var number = literal.Number!.Value;
        return op switch
        {
            "<" => value < number,
            "<=" => value <= number,
            ">" => value > number,
            _ => value >= number,
        };
    }

    /// <summary><c>*</c> matches any run of characters (there is no escape for a literal star, as in CloudWatch).</summary>
    private static bool WildcardMatch(string text, string pattern)
    {
        if (!pattern.Contains('*', StringComparison.Ordinal))
        {
            return string.Equals(text, pattern, StringComparison.Ordinal);
        }
        // Greedy scan that backtracks only to the most recent star: O(text * pattern) at worst, no recursion.
        int t = 0, p = 0, star = -1, starText = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                starText = t;
            }
            else if (p < pattern.Length && pattern[p] == text[t])
            {
                p++;
                t++;
            }
            else if (star >= 0)
            {
                p = star + 1;
                t = ++starText;
            }
            else
            {
                return false;
            }
        }
        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }
        return p == pattern.Length;
    }

    /// <summary>A cursor over the pattern with the grammar rules; errors are FormatExceptions caught by TryParse.</summary>
    private sealed class Parser(string text)
    {
        public int Position { get; private set; }

        public bool AtEnd => Position >= text.Length;

        public char Current => text[Position];

        /// <summary>Skips whitespace; false when the end of the pattern is reached.</summary>
        public bool SkipWhitespace()
        {
            while (!AtEnd && char.IsWhiteSpace(Current))
            {
                Position++;
            }
            return !AtEnd;
        }

        public bool TryConsume(char c)
        {
            if (!AtEnd && Current == c)
            {
                Position++;
                return true;
            }
            return false;
        }

        public bool TryConsume(string token)
        {
            if (string.CompareOrdinal(text, Position, token, 0, token.Length) == 0)
            {
                Position += token.Length;
                return true;
            }
            return false;
        }

        public void Expect(char c)
        {
            if (!TryConsume(c))
            {
                throw Error($"expected '{c}'");
            }
        }

        public FormatException Error(string what) =>
            new(AtEnd ? $"{what} at the end of the pattern" : $"{what} at offset {Position}");

        /// <summary>A keyword (case-insensitive) that is a whole word: IS, NULL, TRUE, FALSE, NOT, EXISTS.</summary>
        private bool TryKeyword(string keyword)
        {
            var end = Position + keyword.Length;
            if (end > text.Length || string.Compare(text, Position, keyword, 0, keyword.Length, StringComparison.OrdinalIgnoreCase) != 0
                || (end < text.Length && char.IsLetterOrDigit(text[end])))
            {
                return false;
            }
            Position = end;
            return true;
        }

        /// <summary>"…" with \" and \\ as the only escapes (any other backslash is kept, so Windows paths read naturally).</summary>
        private string ReadQuoted()
        {
            var open = Position;
            Expect('"');
            var value = new StringBuilder();
            while (!AtEnd && Current != '"')
            {
                if (Current == '\\' && Position + 1 < text.Length && text[Position + 1] is '"' or '\\')
                {
                    Position++;
                }
                value.Append(Current);
                Position++;
            }
            if (AtEnd)
            {
                throw new FormatException($"unbalanced quote: the phrase opened at offset {open} is not closed");
            }
            Position++;
            return value.ToString();
        }

        public string ReadQuotedTerm()
        {
            var term = ReadQuoted();
            if (!AtEnd && !char.IsWhiteSpace(Current))
            {
                throw Error("expected a space after the closing quote");
            }
            return term;
        }

        /// <summary>
        /// An unquoted term runs to the next whitespace. CloudWatch wants terms with punctuation quoted; we take them
        /// as written, but an odd number of quotes inside means a phrase was left open.
        /// </summary>
        public string ReadBareTerm()
        {
            var start = Position;
            while (!AtEnd && !char.IsWhiteSpace(Current))
            {
                Position++;
            }
            var term = text[start..Position];
            if (term.Count(c => c == '"') % 2 != 0)
            {
                throw new FormatException($"unbalanced quote in the term '{term}' at offset {start}");
            }
            return term;
        }

        public Func<JsonElement, bool> ParseOr()
        {
            var left = ParseAnd();
            while (SkipWhitespace() && TryConsume("||"))
            {
                var (l, r) = (left, ParseAnd());
                left = root => l(root) || r(root);
            }
            return left;
        }

        private Func<JsonElement, bool> ParseAnd()
        {
            var left = ParsePrimary();
            while (SkipWhitespace() && TryConsume("&&"))
            {
                var (l, r) = (left, ParsePrimary());
                left = root => l(root) && r(root);
            }
            return left;
        }

        private Func<JsonElement, bool> ParsePrimary()
        {
            SkipWhitespace();
            if (!TryConsume('('))
            {
                return ParseCondition();
            }
            var inner = ParseOr();
            SkipWhitespace();
            Expect(')');
            return inner;
        }

        /// <summary>SELECTOR (IS NULL | IS TRUE | IS FALSE | NOT EXISTS | OP VALUE).</summary>
        private Func<JsonElement, bool> ParseCondition()
        {
            var path = ParseSelector();
            SkipWhitespace();
            if (TryKeyword("IS"))
            {
                SkipWhitespace();
                var kind = TryKeyword("NULL") ? JsonValueKind.Null
                    : TryKeyword("TRUE") ? JsonValueKind.True
                    : TryKeyword("FALSE") ? JsonValueKind.False
                    : throw Error("expected NULL, TRUE or FALSE after IS");
                return root => TryResolve(root, path, out var field) && field.ValueKind == kind;
            }
            if (TryKeyword("NOT"))
            {
                SkipWhitespace();
                if (!TryKeyword("EXISTS"))
                {
                    throw Error("expected EXISTS after NOT");
                }
                return root => !TryResolve(root, path, out _);
            }
            var op = Array.Find(Operators, TryConsume)
                ?? throw Error("expected =, !=, <, <=, >, >=, IS or NOT EXISTS");
            SkipWhitespace();
            var literal = ParseLiteral();
            if (op is not ("=" or "!=") && literal.Number is null)
            {
                throw new FormatException($"'{op}' compares numbers, but '{literal.Text}' is not a number");
            }
            // A field that is missing matches no comparison, != included (NOT EXISTS asks for that).
            return root => TryResolve(root, path, out var field) && Compare(field, op, literal);
        }

        /// <summary>$.name, $.a.b, $.list[0], $.a[1].b: property names run to the next delimiter.</summary>
        private Step[] ParseSelector()
        {
            if (!TryConsume('$'))
            {
                throw Error("expected a selector such as $.field");
            }
            var steps = new List<Step>();
            while (true)
            {
                if (TryConsume('.'))
                {
                    var start = Position;
                    while (!AtEnd && !char.IsWhiteSpace(Current) && !".[]()=!<>&|\"{}".Contains(Current, StringComparison.Ordinal))
                    {
                        Position++;
                    }
                    if (Position == start)
                    {
                        throw Error("expected a property name after '.'");
                    }
                    steps.Add(new Step(text[start..Position], 0));
                }
                else if (TryConsume('['))
                {
                    var start = Position;
                    while (!AtEnd && char.IsAsciiDigit(Current))
                    {
                        Position++;
                    }
                    if (Position == start || !int.TryParse(text.AsSpan(start, Position - start), NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                    {
                        throw Error("expected an array index such as [0]");
                    }
                    Expect(']');
                    steps.Add(new Step(null, index));
                }
                else
                {
                    break;
                }
            }
            return steps.Count > 0 ? [.. steps] : throw Error("expected '.field' or '[index]' after '$'");
        }

        /// <summary>"quoted", %regex%, or a bare word or number (CloudWatch accepts ERROR and 123.123.* unquoted).</summary>
        private Literal ParseLiteral()
        {
            if (!AtEnd && Current == '"')
            {
                return new Literal(ReadQuoted(), null, null);
            }
            if (TryConsume('%'))
            {
                var close = text.IndexOf('%', Position);
                if (close < 0)
                {
                    throw new FormatException($"unbalanced '%': the regular expression at offset {Position - 1} is not closed");
                }
                var body = text[Position..close];
                Position = close + 1;
                return new Literal(body, null, CompileRegex(body));
            }
            var start = Position;
            while (!AtEnd && !char.IsWhiteSpace(Current) && !"()}&|\"".Contains(Current, StringComparison.Ordinal))
            {
                Position++;
            }
            var word = text[start..Position];
            if (word.Length == 0 || "=!<>".Contains(word[0], StringComparison.Ordinal))
            {
                Position = start;
                throw Error("expected a value");
            }
            double? number = double.TryParse(word, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && double.IsFinite(n) ? n : null;
            return new Literal(word, number, null);
        }
    }
}
