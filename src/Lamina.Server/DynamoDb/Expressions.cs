using System.Globalization;

namespace Lamina.Server.DynamoDb;

/// <summary>One step of a document path: a map member's name, or a list index.</summary>
internal readonly record struct PathElement(string? Name, int Index)
{
    public bool IsIndex => Name is null;

    public override string ToString() => Name ?? $"[{Index.ToString(CultureInfo.InvariantCulture)}]";
}

/// <summary>A document path (<c>a.b[2].c</c>) with its names already resolved through ExpressionAttributeNames.</summary>
internal sealed class DocumentPath(List<PathElement> elements)
{
    public IReadOnlyList<PathElement> Elements { get; } = elements;
    public string Head => Elements[0].Name!;
    public bool IsNested => Elements.Count > 1;

    /// <summary>As DynamoDB prints paths in its messages: <c>[a, b, [2]]</c>.</summary>
    public override string ToString() => "[" + string.Join(", ", Elements) + "]";
}

internal abstract class Operand;

internal sealed class PathOperand(DocumentPath path) : Operand
{
    public DocumentPath Path { get; } = path;
}

internal sealed class ValueOperand(string name, AttributeValue value) : Operand
{
    public string Name { get; } = name;
    public AttributeValue Value { get; } = value;
}

/// <summary>size(path) in conditions; if_not_exists(path, v) and list_append(a, b) in updates.</summary>
internal sealed class FunctionOperand(string name, IReadOnlyList<Operand> arguments) : Operand
{
    public string Name { get; } = name;
    public IReadOnlyList<Operand> Arguments { get; } = arguments;
}

/// <summary><c>a + b</c> or <c>a - b</c> in a SET action.</summary>
internal sealed class ArithmeticOperand(Operand left, bool subtract, Operand right) : Operand
{
    public Operand Left { get; } = left;
    public bool Subtract { get; } = subtract;
    public Operand Right { get; } = right;
}

internal abstract class Condition;

internal sealed class Comparison(string op, Operand left, Operand right) : Condition
{
    public string Operator { get; } = op;
    public Operand Left { get; } = left;
    public Operand Right { get; } = right;
}

internal sealed class Between(Operand value, Operand low, Operand high) : Condition
{
    public Operand Value { get; } = value;
    public Operand Low { get; } = low;
    public Operand High { get; } = high;
}

internal sealed class In(Operand value, IReadOnlyList<Operand> list) : Condition
{
    public Operand Value { get; } = value;
    public IReadOnlyList<Operand> List { get; } = list;
}

/// <summary>attribute_exists, attribute_not_exists, attribute_type, begins_with, contains.</summary>
internal sealed class FunctionCondition(string name, IReadOnlyList<Operand> arguments) : Condition
{
    public string Name { get; } = name;
    public IReadOnlyList<Operand> Arguments { get; } = arguments;
}

internal sealed class Logical(string op, Condition left, Condition? right) : Condition
{
    /// <summary>AND, OR or NOT (NOT has no right side).</summary>
    public string Operator { get; } = op;
    public Condition Left { get; } = left;
    public Condition? Right { get; } = right;
}

internal enum UpdateKind
{
    Set, Remove, Add, Delete,
}

internal sealed record UpdateAction(UpdateKind Kind, DocumentPath Path, Operand? Value);

/// <summary>
/// A request's ExpressionAttributeNames and ExpressionAttributeValues, shared by all its expressions, and which of them
/// the expressions used: DynamoDB refuses a request that defines one it never uses.
/// </summary>
internal sealed class ExpressionContext(IReadOnlyDictionary<string, string>? names, IReadOnlyDictionary<string, AttributeValue>? values)
{
    private readonly HashSet<string> _usedNames = new(StringComparer.Ordinal);
    private readonly HashSet<string> _usedValues = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, string>? Names { get; } = names;
    public IReadOnlyDictionary<string, AttributeValue>? Values { get; } = values;

    public string? ResolveName(string token)
    {
        if (Names is null || !Names.TryGetValue(token, out var name))
        {
            return null;
        }
        _usedNames.Add(token);
        return name;
    }

    public AttributeValue? ResolveValue(string token)
    {
        if (Values is null || !Values.TryGetValue(token, out var value))
        {
            return null;
        }
        _usedValues.Add(token);
        return value;
    }

    /// <summary>After every expression of the request is parsed: names or values that none used are an error.</summary>
    public void CheckAllUsed()
    {
        if (Names is not null && Names.Keys.Where(k => !_usedNames.Contains(k)).ToList() is { Count: > 0 } names)
        {
            throw DynamoException.Validation($"Value provided in ExpressionAttributeNames unused in expressions: keys: {{{string.Join(", ", names)}}}");
        }
        if (Values is not null && Values.Keys.Where(k => !_usedValues.Contains(k)).ToList() is { Count: > 0 } values)
        {
            throw DynamoException.Validation($"Value provided in ExpressionAttributeValues unused in expressions: keys: {{{string.Join(", ", values)}}}");
        }
    }
}

/// <summary>
/// The parser of DynamoDB's expression languages (condition and filter, key condition, update, projection): a
/// tokenizer and a recursive-descent parser over DynamoDB's grammar, answering mistakes with the service's own
/// ValidationException messages ("Invalid UpdateExpression: Syntax error; token: …, near: …").
/// </summary>
internal sealed class ExpressionParser
{
    private enum TokenType
    {
        Identifier, Name, Value, Number, Symbol, End,
    }

    private readonly record struct Token(TokenType Type, string Text, int Start, int End);

    private static readonly HashSet<string> ConditionFunctions = new(StringComparer.Ordinal)
    {
        "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains", "size",
    };

    private static readonly string[] AttributeTypes = ["S", "N", "B", "NULL", "SS", "BOOL", "L", "BS", "NS", "M"];

    private readonly string _text;
    private readonly string _kind;
    private readonly ExpressionContext _context;
    private readonly List<Token> _tokens;
    private int _position;

    private ExpressionParser(string text, string kind, ExpressionContext context)
    {
        _text = text;
        _kind = kind;
        _context = context;
        _tokens = Tokenize();
    }

    public static Condition ParseCondition(string text, string kind, ExpressionContext context)
    {
        var parser = Start(text, kind, context);
        var condition = parser.ParseOr();
        parser.ExpectEnd();
        return condition;
    }

    public static List<UpdateAction> ParseUpdate(string text, ExpressionContext context)
    {
        var parser = Start(text, "UpdateExpression", context);
        var actions = parser.ParseUpdateSections();
        parser.CheckOverlaps(actions.Select(static a => a.Path).ToList());
        return actions;
    }

    public static List<DocumentPath> ParseProjection(string text, ExpressionContext context)
    {
        var parser = Start(text, "ProjectionExpression", context);
        var paths = new List<DocumentPath> { parser.ParsePath() };
        while (parser.Accept(","))
        {
            paths.Add(parser.ParsePath());
        }
        parser.ExpectEnd();
        parser.CheckOverlaps(paths);
        return paths;
    }

    private static ExpressionParser Start(string text, string kind, ExpressionContext context)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw DynamoException.Validation($"Invalid {kind}: The expression can not be empty;");
        }
        if (text.Length > 4096)
        {
            throw DynamoException.Validation($"Invalid {kind}: Expression size has exceeded the maximum allowed size; expression size: {text.Length}");
        }
        return new ExpressionParser(text, kind, context);
    }

    private DynamoException Error(string message) => DynamoException.Validation($"Invalid {_kind}: {message}");

    private List<Token> Tokenize()
    {
        var tokens = new List<Token>();
        var i = 0;
        while (i < _text.Length)
        {
            var c = _text[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
                continue;
            }
            var start = i;
            if (char.IsAsciiLetter(c) || c == '_' || c == '#' || c == ':')
            {
                i++;
                while (i < _text.Length && (char.IsAsciiLetterOrDigit(_text[i]) || _text[i] == '_'))
                {
                    i++;
                }
                var type = c == '#' ? TokenType.Name : c == ':' ? TokenType.Value : TokenType.Identifier;
                tokens.Add(new Token(type, _text[start..i], start, i));
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                while (i < _text.Length && char.IsAsciiDigit(_text[i]))
                {
                    i++;
                }
                tokens.Add(new Token(TokenType.Number, _text[start..i], start, i));
                continue;
            }
            if (c is '<' or '>' && i + 1 < _text.Length && (_text[i + 1] == '=' || (c == '<' && _text[i + 1] == '>')))
            {
                i += 2;
                tokens.Add(new Token(TokenType.Symbol, _text[start..i], start, i));
                continue;
            }
            if ("()[].,=<>+-".Contains(c, StringComparison.Ordinal))
            {
                i++;
                tokens.Add(new Token(TokenType.Symbol, c.ToString(), start, i));
                continue;
            }
            // An illegal character: DynamoDB reports it as the token of a syntax error.
            var bad = char.IsSurrogate(c) && i + 1 < _text.Length ? _text.Substring(i, 2) : c.ToString();
            tokens.Add(new Token(TokenType.Symbol, bad, start, i + bad.Length));
            _position = tokens.Count - 1;
            throw SyntaxError(tokens);
        }
        tokens.Add(new Token(TokenType.End, "<EOF>", _text.Length, _text.Length));
        return tokens;
    }

    private Token Current => _tokens[_position];

    private DynamoException SyntaxError() => SyntaxError(_tokens);

    private DynamoException SyntaxError(List<Token> tokens)
    {
        var token = tokens[_position];
        var from = _position > 0 ? tokens[_position - 1].Start : token.Start;
        var to = token.Type == TokenType.End ? token.Start : token.End;
        if (token.Type != TokenType.End && _position + 1 < tokens.Count && tokens[_position + 1].Type != TokenType.End)
        {
            to = tokens[_position + 1].End;
        }
        return Error($"Syntax error; token: \"{token.Text}\", near: \"{_text[from..to]}\"");
    }

    private bool IsSymbol(string symbol) => Current.Type == TokenType.Symbol && Current.Text == symbol;

    private bool IsKeyword(string keyword) => Current.Type == TokenType.Identifier && Current.Text.Equals(keyword, StringComparison.OrdinalIgnoreCase);

    private bool Accept(string symbol)
    {
        if (!IsSymbol(symbol))
        {
            return false;
        }
        _position++;
        return true;
    }

    private void Expect(string symbol)
    {
        if (!Accept(symbol))
        {
            throw SyntaxError();
        }
    }

    private bool AcceptKeyword(string keyword)
    {
        if (!IsKeyword(keyword))
        {
            return false;
        }
        _position++;
        return true;
    }

    private void ExpectEnd()
    {
        if (Current.Type != TokenType.End)
        {
            throw SyntaxError();
        }
    }

    // ---- conditions: OR < AND < NOT < comparison, function, parentheses ----

    private Condition ParseOr()
    {
        var left = ParseAnd();
        while (AcceptKeyword("OR"))
        {
            left = new Logical("OR", left, ParseAnd());
        }
        return left;
    }

    private Condition ParseAnd()
    {
        var left = ParseNot();
        while (AcceptKeyword("AND"))
        {
            left = new Logical("AND", left, ParseNot());
        }
        return left;
    }

    private Condition ParseNot()
    {
        if (AcceptKeyword("NOT"))
        {
            return new Logical("NOT", ParseNot(), null);
        }
        return ParsePrimaryCondition();
    }

    private Condition ParsePrimaryCondition()
    {
        if (IsSymbol("("))
        {
            // "(" opens either a nested condition or a parenthesised operand ("(a) = :v"): try the condition first.
            var start = _position;
            _position++;
            try
            {
                var inner = ParseOr();
                Expect(")");
                if (!IsComparisonContinuation())
                {
                    return inner;
                }
            }
            catch (DynamoException)
            {
            }
            _position = start;
        }
        var operand = ParseOperand(condition: true);
        if (Current.Type == TokenType.Symbol && Current.Text is "=" or "<>" or "<" or "<=" or ">" or ">=")
        {
            var op = Current.Text;
            _position++;
            var right = ParseOperand(condition: true);
            CheckComparable(operand, right);
            if (operand is PathOperand lp && right is PathOperand rp && lp.Path.ToString() == rp.Path.ToString())
            {
                throw Error($"The first operand must be distinct from the remaining operands for this operator or function; operator: {op}, first operand: {lp.Path}");
            }
            return new Comparison(op, operand, right);
        }
        if (AcceptKeyword("BETWEEN"))
        {
            var low = ParseOperand(condition: true);
            if (!AcceptKeyword("AND"))
            {
                throw SyntaxError();
            }
            var high = ParseOperand(condition: true);
            CheckComparable(operand, low, high);
            if (low is ValueOperand lv && high is ValueOperand hv)
            {
                if (lv.Value.Kind != hv.Value.Kind)
                {
                    throw Error($"The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {{{lv.Value.Kind}:{lv.Value}}}, upper bound operand: AttributeValue: {{{hv.Value.Kind}:{hv.Value}}}");
                }
                if (AttributeValue.Compare(lv.Value, hv.Value) > 0)
                {
                    throw Error($"The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {{{lv.Value.Kind}:{lv.Value}}}, upper bound operand: AttributeValue: {{{hv.Value.Kind}:{hv.Value}}}");
                }
            }
            return new Between(operand, low, high);
        }
        if (AcceptKeyword("IN"))
        {
            Expect("(");
            var list = new List<Operand> { ParseOperand(condition: true) };
            while (Accept(","))
            {
                list.Add(ParseOperand(condition: true));
            }
            Expect(")");
            if (list.Count > 100)
            {
                throw Error($"The IN operator is provided with too many operands; number of operands: {list.Count}");
            }
            CheckComparable([operand, .. list]);
            return new In(operand, list);
        }
        if (operand is FunctionOperand { Name: not "size" and not "if_not_exists" and not "list_append" } function)
        {
            return new FunctionCondition(function.Name, function.Arguments);
        }
        if (operand is FunctionOperand sizeFunction)
        {
            throw Error($"The function is not allowed to be used this way in an expression; function: {sizeFunction.Name}");
        }
        throw SyntaxError();
    }

    private bool IsComparisonContinuation() =>
        (Current.Type == TokenType.Symbol && Current.Text is "=" or "<>" or "<" or "<=" or ">" or ">=") || IsKeyword("BETWEEN") || IsKeyword("IN");

    /// <summary>Boolean functions (attribute_exists …) cannot be compared; only size() yields a value.</summary>
    private void CheckComparable(params Operand[] operands)
    {
        foreach (var operand in operands)
        {
            if (operand is FunctionOperand { Name: not "size" } function)
            {
                throw Error($"The function is not allowed to be used this way in an expression; function: {function.Name}");
            }
        }
    }

    private Operand ParseOperand(bool condition)
    {
        if (Accept("("))
        {
            var inner = condition ? ParseOperand(condition) : ParseSetValue();
            Expect(")");
            return inner;
        }
        var token = Current;
        switch (token.Type)
        {
            case TokenType.Value:
                _position++;
                return new ValueOperand(token.Text, ResolveValue(token.Text));
            case TokenType.Identifier when _tokens[_position + 1] is { Type: TokenType.Symbol, Text: "(" }:
                return ParseFunction(condition);
            case TokenType.Identifier or TokenType.Name:
                return new PathOperand(ParsePath());
            default:
                throw SyntaxError();
        }
    }

    private FunctionOperand ParseFunction(bool condition)
    {
        var name = Current.Text;
        _position += 2;
        var arguments = new List<Operand> { ParseOperand(condition) };
        while (Accept(","))
        {
            arguments.Add(ParseOperand(condition));
        }
        Expect(")");
        var known = condition ? ConditionFunctions.Contains(name) : name is "if_not_exists" or "list_append";
        if (!known)
        {
            throw Error($"Invalid function name; function: {name}");
        }
        var expected = name is "attribute_exists" or "attribute_not_exists" or "size" ? 1 : 2;
        if (arguments.Count != expected)
        {
            throw Error($"Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {arguments.Count}");
        }
        switch (name)
        {
            case "attribute_exists" or "attribute_not_exists" or "if_not_exists" when arguments[0] is not PathOperand:
                throw Error($"Operator or function requires a document path; operator or function: {name}");
            case "attribute_type":
                if (arguments[1] is not ValueOperand { Value.Kind: AttributeKind.S } type)
                {
                    var kind = arguments[1] is ValueOperand other ? other.Value.Kind.ToString() : "{NS,SS,L,BS,N,M,B,BOOL,NULL,S}";
                    throw Error($"Incorrect operand type for operator or function; operator or function: {name}, operand type: {kind}");
                }
                if (!AttributeTypes.Contains(type.Value.S))
                {
                    throw Error($"Invalid attribute type name found; type: {type.Value.S}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}");
                }
                break;
            case "begins_with":
                foreach (var argument in arguments)
                {
                    if (argument is ValueOperand { Value.Kind: not (AttributeKind.S or AttributeKind.B) } value)
                    {
                        throw Error($"Incorrect operand type for operator or function; operator or function: {name}, operand type: {value.Value.Kind}");
                    }
                }
                break;
            case "size" when arguments[0] is ValueOperand { Value.Kind: AttributeKind.N or AttributeKind.BOOL or AttributeKind.NULL } sized:
                throw Error($"Incorrect operand type for operator or function; operator or function: {name}, operand type: {sized.Value.Kind}");
            case "list_append":
                foreach (var argument in arguments)
                {
                    if (argument is ValueOperand { Value.Kind: not AttributeKind.L } value)
                    {
                        throw Error($"Incorrect operand type for operator or function; operator or function: {name}, operand type: {value.Value.Kind}");
                    }
                }
                break;
        }
        if (condition && name is not "size")
        {
            foreach (var argument in arguments)
            {
                if (argument is FunctionOperand { Name: not "size" } nested)
                {
                    throw Error($"The function is not allowed to be used this way in an expression; function: {nested.Name}");
                }
            }
        }
        if (name is "contains" or "begins_with" && arguments[0] is PathOperand p0 && arguments[1] is PathOperand p1 && p0.Path.ToString() == p1.Path.ToString())
        {
            throw Error($"The first operand must be distinct from the remaining operands for this operator or function; operator: {name}, first operand: {p0.Path}");
        }
        return new FunctionOperand(name, arguments);
    }

    private AttributeValue ResolveValue(string token) =>
        _context.ResolveValue(token) ?? throw Error($"An expression attribute value used in expression is not defined; attribute value: {token}");

    private DocumentPath ParsePath()
    {
        var elements = new List<PathElement> { new(PathName(), 0) };
        while (true)
        {
            if (Accept("."))
            {
                elements.Add(new PathElement(PathName(), 0));
            }
            else if (Accept("["))
            {
                if (Current.Type != TokenType.Number)
                {
                    throw SyntaxError();
                }
                if (!int.TryParse(Current.Text, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                {
                    throw Error($"List index is not within the allowable range; index: [{Current.Text}]");
                }
                _position++;
                Expect("]");
                elements.Add(new PathElement(null, index));
            }
            else
            {
                break;
            }
        }
        if (elements.Count > AttributeValue.MaxDepth)
        {
            throw Error("The document path has too many nesting levels; nesting levels: " + elements.Count.ToString(CultureInfo.InvariantCulture));
        }
        return new DocumentPath(elements);
    }

    private string PathName()
    {
        var token = Current;
        if (token.Type == TokenType.Name)
        {
            _position++;
            return _context.ResolveName(token.Text)
                ?? throw Error($"An expression attribute name used in the document path is not defined; attribute name: {token.Text}");
        }
        if (token.Type != TokenType.Identifier)
        {
            throw SyntaxError();
        }
        if (IsStructuralKeyword(token.Text))
        {
            throw SyntaxError();
        }
        if (ReservedWords.Contains(token.Text))
        {
            throw Error($"Attribute name is a reserved keyword; reserved keyword: {token.Text}");
        }
        _position++;
        return token.Text;
    }

    private bool IsStructuralKeyword(string word) => _kind == "UpdateExpression"
        ? word.Equals("SET", StringComparison.OrdinalIgnoreCase) || word.Equals("REMOVE", StringComparison.OrdinalIgnoreCase)
          || word.Equals("ADD", StringComparison.OrdinalIgnoreCase) || word.Equals("DELETE", StringComparison.OrdinalIgnoreCase)
        : word.Equals("AND", StringComparison.OrdinalIgnoreCase) || word.Equals("OR", StringComparison.OrdinalIgnoreCase)
          || word.Equals("NOT", StringComparison.OrdinalIgnoreCase) || word.Equals("BETWEEN", StringComparison.OrdinalIgnoreCase)
          || word.Equals("IN", StringComparison.OrdinalIgnoreCase);

    // ---- update expressions ----

    private List<UpdateAction> ParseUpdateSections()
    {
        var actions = new List<UpdateAction>();
        var seen = new HashSet<UpdateKind>();
        do
        {
            if (Current.Type != TokenType.Identifier)
            {
                throw SyntaxError();
            }
            var kind = Current.Text.ToUpperInvariant() switch
            {
                "SET" => UpdateKind.Set,
                "REMOVE" => UpdateKind.Remove,
                "ADD" => UpdateKind.Add,
                "DELETE" => UpdateKind.Delete,
                _ => throw SyntaxError(),
            };
            _position++;
            if (!seen.Add(kind))
            {
                throw Error($"The \"{kind.ToString().ToUpperInvariant()}\" section can only be used once in an update expression;");
            }
            do
            {
                actions.Add(ParseAction(kind));
            }
            while (Accept(","));
        }
        while (Current.Type != TokenType.End);
        return actions;
    }

    private UpdateAction ParseAction(UpdateKind kind)
    {
        var path = ParsePath();
        switch (kind)
        {
            case UpdateKind.Set:
                Expect("=");
                return new UpdateAction(kind, path, ParseSetValue());
            case UpdateKind.Remove:
                return new UpdateAction(kind, path, null);
            default:
                if (Current.Type != TokenType.Value)
                {
                    throw SyntaxError();
                }
                var token = Current.Text;
                _position++;
                var value = ResolveValue(token);
                var allowed = kind == UpdateKind.Add ? value.Kind is AttributeKind.N || value.IsSet : value.IsSet;
                if (!allowed)
                {
                    throw Error($"Incorrect operand type for operator or function; operator: {kind.ToString().ToUpperInvariant()}, operand type: {TypeWord(value.Kind)}");
                }
                return new UpdateAction(kind, path, new ValueOperand(token, value));
        }
    }

    private static string TypeWord(AttributeKind kind) => kind switch
    {
        AttributeKind.S => "STRING",
        AttributeKind.N => "NUMBER",
        AttributeKind.B => "BINARY",
        AttributeKind.BOOL => "BOOLEAN",
        AttributeKind.NULL => "NULL",
        AttributeKind.L => "LIST",
        AttributeKind.M => "MAP",
        _ => kind.ToString(),
    };

    private Operand ParseSetValue()
    {
        var left = ParseOperand(condition: false);
        if (Current.Type == TokenType.Symbol && Current.Text is "+" or "-")
        {
            var subtract = Current.Text == "-";
            _position++;
            var right = ParseOperand(condition: false);
            foreach (var side in new[] { left, right })
            {
                if (side is ValueOperand { Value.Kind: not AttributeKind.N } value)
                {
                    throw Error($"Incorrect operand type for operator or function; operator or function: {(subtract ? "-" : "+")}, operand type: {value.Value.Kind}");
                }
            }
            return new ArithmeticOperand(left, subtract, right);
        }
        return left;
    }

    /// <summary>Two paths of one expression may not overlap (<c>a</c> and <c>a.b</c>) nor conflict (<c>a.b</c> and <c>a[0]</c>).</summary>
    private void CheckOverlaps(List<DocumentPath> paths)
    {
        for (var i = 0; i < paths.Count; i++)
        {
            for (var j = 0; j < i; j++)
            {
                var one = paths[j].Elements;
                var two = paths[i].Elements;
                var shared = Math.Min(one.Count, two.Count);
                var k = 0;
                for (; k < shared; k++)
                {
                    if (one[k].IsIndex != two[k].IsIndex)
                    {
                        throw Error($"Two document paths conflict with each other; must remove or rewrite one of these paths; path one: {paths[j]}, path two: {paths[i]}");
                    }
                    if (one[k] != two[k])
                    {
                        break;
                    }
                }
                if (k == shared)
                {
                    throw Error($"Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {paths[j]}, path two: {paths[i]}");
                }
            }
        }
    }
}
