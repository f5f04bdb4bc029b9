using System.Globalization;
using System.Text;
using System.Text.Json;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// ExecuteStatement: DynamoDB's PartiQL for single-table SELECT, INSERT, UPDATE and DELETE. A statement is
/// translated into the expression languages (its paths become #names, its literals and <c>?</c> parameters :values)
/// and run by the same code as Query/Scan, PutItem, UpdateItem and DeleteItem, so conditions, types and errors
/// behave the same. SELECT reads one partition when the WHERE clause fixes the partition key (a top-level
/// <c>pk = …</c>), else scans with the WHERE clause as its filter, in 1 MB pages (NextToken).
/// </summary>
internal static partial class DynamoDbApi
{
    private static async Task ExecuteStatementAsync(DynamoCall call)
    {
        var text = call.String("Statement")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'statement' failed to satisfy constraint: Member must not be null");
        var parameters = call.Element("Parameters") is { ValueKind: JsonValueKind.Array } p ? p.EnumerateArray().Select(static e => AttributeValue.Parse(e)).ToList() : [];
        var statement = new PartiQLTranslator(text, parameters).Translate();
        var table = call.Store.Require(call.Account, statement.Table);
        switch (statement.Kind)
        {
            case "SELECT":
                await SelectAsync(call, table, statement);
                break;
            case "INSERT":
            {
                var item = statement.Item!;
                ValidateItem(table, item);
                var key = ItemKey.Of(table, item);
                await call.Store.WriteAsync(context =>
                {
                    var current = context.Current(table);
                    if (DynamoStore.Get(context, current, key) is not null)
                    {
                        throw new DynamoException("DuplicateItemException", "Duplicate primary key exists in table");
                    }
                    DynamoStore.Put(context, current, key, item, null);
                    return 0;
                }, table);
                await call.RespondAsync(static _ => { });
                break;
            }
            case "UPDATE" or "DELETE":
            {
                var expressions = new ExpressionContext(statement.Names, statement.Values);
                var condition = statement.Where is null ? null : ExpressionParser.ParseCondition(statement.Where, "ConditionExpression", expressions);
                var key = KeyFromCondition(table, condition)
                    ?? throw DynamoException.Validation("Where clause does not contain a mandatory equality on all key attributes");
                var actions = statement.Update is null ? [] : ExpressionParser.ParseUpdate(statement.Update, expressions);
                CheckUpdatePaths(table, actions);
                var itemKey = ItemKey.Of(table, key);
                await call.Store.WriteAsync(context =>
                {
                    var current = context.Current(table);
                    var old = DynamoStore.Get(context, current, itemKey);
                    // Like DynamoDB: an UPDATE needs the item, and both need every other condition of the WHERE clause to
                    // hold; a DELETE by key alone of an item that is not there does nothing.
                    if (old is null)
                    {
                        return statement.Kind == "DELETE" && IsKeyOnly(current, condition!) ? 0 : throw DynamoException.ConditionalCheckFailed();
                    }
                    if (!ExpressionEvaluator.Matches(condition!, old))
                    {
                        throw DynamoException.ConditionalCheckFailed();
                    }
                    if (statement.Kind == "DELETE")
                    {
                        DynamoStore.Delete(context, current, itemKey, old);
                        return 0;
                    }
                    var updated = ExpressionEvaluator.ApplyUpdate(actions, old);
                    ValidateItem(current, updated);
                    DynamoStore.Put(context, current, itemKey, updated, old);
                    return 0;
                }, table);
                await call.RespondAsync(static _ => { });
                break;
            }
        }
    }

    private static async Task SelectAsync(DynamoCall call, TableInfo table, PartiQLStatement statement)
    {
        var index = statement.Index is null ? null : table.Index(statement.Index)
            ?? throw DynamoException.Validation($"The table does not have the specified index: {statement.Index}");
        var expressions = new ExpressionContext(statement.Names, statement.Values);
        var filter = statement.Where is null ? null : ExpressionParser.ParseCondition(statement.Where, "FilterExpression", expressions);
        var projection = statement.Projection is null ? null : ExpressionParser.ParseProjection(statement.Projection, expressions);
        var limit = call.Long("Limit") is { } l ? (int)Math.Clamp(l, 1, int.MaxValue) : (int?)null;
        Item? start = null;
        if (call.String("NextToken") is { } token)
        {
            try
            {
                start = AttributeValue.Deserialize(Convert.FromBase64String(token));
            }
            catch (Exception e) when (e is FormatException or JsonException or DynamoException)
            {
                throw DynamoException.Validation("Invalid NextToken");
            }
        }
        var hash = index?.Hash ?? table.Hash;
        var hashValue = filter is null ? null : EqualityOn(filter, hash.Name);
        using var connection = call.Store.OpenRead();
        using var snapshot = DynamoStore.Snapshot(connection);
        IEnumerable<ItemRow> rows;
        var all = new SortRange(null, false, null, false);
        if (hashValue is not null && hashValue.Kind == hash.Type)
        {
            var pk = ItemKey.Encode(hashValue);
            rows = index is null
                ? DynamoStore.QueryTable(connection, table, pk, all, true, start is null || table.Range is null ? null : ItemKey.Encode(start[table.Range.Name]))
                : DynamoStore.QueryIndex(connection, table, index, pk, all, true, start is null ? null : (index.Range is { } ir ? ItemKey.Encode(start[ir.Name]) : [], ItemKey.Of(table, start)));
            if (start is not null && index is null && table.Range is null)
            {
                rows = [];
            }
        }
        else
        {
            rows = index is null
                ? DynamoStore.ScanTable(connection, table, 0, ItemKey.Segments - 1, start is null ? null : ItemKey.Of(table, start))
                : DynamoStore.ScanIndex(connection, table, index, 0, ItemKey.Segments - 1, start is null ? null
                    : (ItemKey.Encode(start[index.Hash.Name]), index.Range is { } ir ? ItemKey.Encode(start[ir.Name]) : [], ItemKey.Of(table, start)));
        }
        var page = ReadPage(rows, table, index, filter, projection, projection is null ? "ALL_ATTRIBUTES" : "SPECIFIC_ATTRIBUTES", limit, consistent: call.Bool("ConsistentRead") ?? false);
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("Items");
            foreach (var item in page.Items)
            {
                AttributeValue.WriteMap(w, item);
            }
            foreach (var json in page.RawItems)
            {
                w.WriteRawValue(json, skipInputValidation: true);
            }
            w.WriteEndArray();
            if (page.LastKey is { } last)
            {
                w.WriteString("NextToken", Convert.ToBase64String(AttributeValue.Serialize(last)));
            }
        });
    }

    /// <summary>The value a top-level AND-conjunct <c>name = value</c> of the condition gives, if any.</summary>
    private static AttributeValue? EqualityOn(Condition condition, string name) => condition switch
    {
        Logical { Operator: "AND" } and => EqualityOn(and.Left, name) ?? EqualityOn(and.Right!, name),
        Comparison { Operator: "=", Left: PathOperand { Path.IsNested: false } p, Right: ValueOperand v } when p.Path.Head == name => v.Value,
        Comparison { Operator: "=", Left: ValueOperand v, Right: PathOperand { Path.IsNested: false } p } when p.Path.Head == name => v.Value,
        _ => null,
    };

    private static Item? KeyFromCondition(TableInfo table, Condition? condition)
    {
        if (condition is null || EqualityOn(condition, table.Hash.Name) is not { } hash || hash.Kind != table.Hash.Type)
        {
            return null;
        }
        var key = new Item(StringComparer.Ordinal) { [table.Hash.Name] = hash };
        if (table.Range is { } range)
        {
            if (EqualityOn(condition, range.Name) is not { } sort || sort.Kind != range.Type)
            {
                return null;
            }
            key[range.Name] = sort;
        }
        return key;
    }

    /// <summary>Whether the WHERE clause is nothing but the key equalities (then a missing item is no failure for DELETE).</summary>
    private static bool IsKeyOnly(TableInfo table, Condition condition) => condition switch
    {
        Logical { Operator: "AND" } and => IsKeyOnly(table, and.Left) && IsKeyOnly(table, and.Right!),
        Comparison { Operator: "=", Left: PathOperand { Path.IsNested: false } p, Right: ValueOperand } => table.IsKey(p.Path.Head),
        _ => false,
    };
}

internal sealed record PartiQLStatement(string Kind, string Table, string? Index, string? Where, string? Projection, string? Update, Item? Item,
    Dictionary<string, string> Names, Dictionary<string, AttributeValue> Values);

/// <summary>Reads a PartiQL statement into the pieces of the expression languages.</summary>
internal sealed class PartiQLTranslator(string text, List<AttributeValue> parameters)
{
    private readonly record struct Token(char Kind, string Text); // Kind: w word, q "quoted", s 'string', n number, ? parameter, p punctuation, e end

    private readonly List<Token> _tokens = [];
    private readonly Dictionary<string, string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, AttributeValue> _values = new(StringComparer.Ordinal);
    private int _position;
    private int _parameter;

    public PartiQLStatement Translate()
    {
        Tokenize();
        var verb = Word();
        PartiQLStatement statement;
        switch (verb)
        {
            case "SELECT":
            {
                string? projection = null;
                if (!Accept("*"))
                {
                    var paths = new List<string> { Path() };
                    while (Accept(","))
                    {
                        paths.Add(Path());
                    }
                    projection = string.Join(", ", paths);
                }
                ExpectWord("FROM");
                var (table, index) = TableRef();
                var where = AcceptWord("WHERE") ? Condition() : null;
                statement = new PartiQLStatement("SELECT", table, index, where, projection, null, null, _names, _values);
                break;
            }
            case "INSERT":
            {
                ExpectWord("INTO");
                var (table, _) = TableRef();
                ExpectWord("VALUE");
                var value = Literal();
                if (value.Kind != AttributeKind.M)
                {
                    throw Malformed("INSERT takes one item: VALUE {...}");
                }
                statement = new PartiQLStatement("INSERT", table, null, null, null, null, new Item(value.M, StringComparer.Ordinal), _names, _values);
                break;
            }
            case "UPDATE":
            {
                var (table, _) = TableRef();
                var sets = new List<string>();
                var removes = new List<string>();
                while (true)
                {
                    if (AcceptWord("SET"))
                    {
                        do
                        {
                            var path = Path();
                            Expect("=");
                            sets.Add(path + " = " + SetValue());
                        }
                        while (Accept(",") && !IsWord("SET") && !IsWord("REMOVE"));
                    }
                    else if (AcceptWord("REMOVE"))
                    {
                        do
                        {
                            removes.Add(Path());
                        }
                        while (Accept(","));
                    }
                    else
                    {
                        break;
                    }
                }
                if (sets.Count == 0 && removes.Count == 0)
                {
                    throw Malformed("UPDATE needs SET or REMOVE");
                }
                ExpectWord("WHERE");
                var where = Condition();
                var update = (sets.Count > 0 ? "SET " + string.Join(", ", sets) : "") + (removes.Count > 0 ? " REMOVE " + string.Join(", ", removes) : "");
                statement = new PartiQLStatement("UPDATE", table, null, where, null, update.Trim(), null, _names, _values);
                break;
            }
            case "DELETE":
            {
                ExpectWord("FROM");
                var (table, _) = TableRef();
                ExpectWord("WHERE");
                statement = new PartiQLStatement("DELETE", table, null, Condition(), null, null, null, _names, _values);
                break;
            }
            default:
                throw Malformed($"unsupported statement {verb}; Lamina runs SELECT, INSERT, UPDATE and DELETE");
        }
        if (_tokens[_position].Kind != 'e')
        {
            throw Malformed($"unexpected {_tokens[_position].Text}");
        }
        if (_parameter != parameters.Count)
        {
            throw DynamoException.Validation($"Number of parameters in request and statement don't match.");
        }
        return statement;
    }

    private static DynamoException Malformed(string detail) => DynamoException.Validation($"Statement wasn't well formed, can't be processed: {detail}");

    private void Tokenize()
    {
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
                continue;
            }
            if (char.IsAsciiLetter(c) || c == '_')
            {
                var start = i;
                while (i < text.Length && (char.IsAsciiLetterOrDigit(text[i]) || text[i] == '_'))
                {
                    i++;
                }
                _tokens.Add(new Token('w', text[start..i]));
                continue;
            }
            if (c is '"' or '\'')
            {
                var sb = new StringBuilder();
                i++;
                while (true)
                {
                    if (i >= text.Length)
                    {
                        throw Malformed("unterminated quote");
                    }
                    if (text[i] == c)
                    {
                        if (i + 1 < text.Length && text[i + 1] == c)
                        {
                            sb.Append(c);
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    sb.Append(text[i++]);
                }
                _tokens.Add(new Token(c == '"' ? 'q' : 's', sb.ToString()));
                continue;
            }
            if (char.IsAsciiDigit(c) || c == '-' && i + 1 < text.Length && char.IsAsciiDigit(text[i + 1]) && PreviousAllowsSign())
            {
                var start = i++;
                while (i < text.Length && (char.IsAsciiDigit(text[i]) || text[i] is '.' or 'e' or 'E' || (text[i] is '+' or '-' && text[i - 1] is 'e' or 'E')))
                {
                    i++;
                }
                _tokens.Add(new Token('n', text[start..i]));
                continue;
            }
            if (c == '?')
            {
                _tokens.Add(new Token('?', "?"));
                i++;
                continue;
            }
            foreach (var symbol in new[] { "<<", ">>", "<=", ">=", "<>", "!=", "=", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "*", "+", "-" })
            {
                if (string.CompareOrdinal(text, i, symbol, 0, symbol.Length) == 0)
                {
                    _tokens.Add(new Token('p', symbol));
                    i += symbol.Length;
                    goto next;
                }
            }
            throw Malformed($"unexpected character {c}");
        next:;
        }
        _tokens.Add(new Token('e', "<EOF>"));
    }

    private bool PreviousAllowsSign() => _tokens.Count == 0 || _tokens[^1].Kind == 'p' && _tokens[^1].Text is not (")" or "]" or "}") || _tokens[^1].Kind == 'w' && IsKeyword(_tokens[^1].Text);

    private static bool IsKeyword(string word) => word.ToUpperInvariant() is "AND" or "OR" or "NOT" or "BETWEEN" or "IN" or "WHERE" or "SET" or "VALUE";

    private Token Current => _tokens[_position];

    private bool IsWord(string word) => Current.Kind == 'w' && Current.Text.Equals(word, StringComparison.OrdinalIgnoreCase);

    private bool AcceptWord(string word)
    {
        if (!IsWord(word))
        {
            return false;
        }
        _position++;
        return true;
    }

    private void ExpectWord(string word)
    {
        if (!AcceptWord(word))
        {
            throw Malformed($"expected {word} but found {Current.Text}");
        }
    }

    private string Word() => Current.Kind == 'w' ? _tokens[_position++].Text.ToUpperInvariant() : throw Malformed($"unexpected {Current.Text}");

    private bool Accept(string symbol)
    {
        if (Current.Kind != 'p' || Current.Text != symbol)
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
            throw Malformed($"expected {symbol} but found {Current.Text}");
        }
    }

    private (string Table, string? Index) TableRef()
    {
        var table = Name();
        string? index = null;
        if (Accept("."))
        {
            index = Name();
        }
        return (table, index);
    }

    private string Name() => Current.Kind is 'w' or 'q' ? _tokens[_position++].Text : throw Malformed($"expected a name but found {Current.Text}");

    /// <summary>A document path, each name as a #placeholder (so reserved words need no quoting, as in PartiQL).</summary>
    private string Path()
    {
        var sb = new StringBuilder(NamePlaceholder(Name()));
        while (true)
        {
            if (Accept("."))
            {
                sb.Append('.').Append(NamePlaceholder(Name()));
            }
            else if (Current.Kind == 'p' && Current.Text == "[" && _tokens[_position + 1].Kind == 'n')
            {
                _position++;
                sb.Append('[').Append(_tokens[_position++].Text).Append(']');
                Expect("]");
            }
            else
            {
                return sb.ToString();
            }
        }
    }

    private string NamePlaceholder(string name)
    {
        var existing = _names.FirstOrDefault(p => p.Value == name).Key;
        if (existing is not null)
        {
            return existing;
        }
        var placeholder = "#p" + _names.Count.ToString(CultureInfo.InvariantCulture);
        _names[placeholder] = name;
        return placeholder;
    }

    private string ValuePlaceholder(AttributeValue value)
    {
        var placeholder = ":p" + _values.Count.ToString(CultureInfo.InvariantCulture);
        _values[placeholder] = value;
        return placeholder;
    }

    /// <summary>The WHERE clause in the condition language.</summary>
    private string Condition()
    {
        var sb = new StringBuilder();
        var depth = 0;
        while (Current.Kind != 'e' && !(depth == 0 && Current.Kind == 'p' && Current.Text == ")"))
        {
            var token = Current;
            if (token.Kind == 'w' && token.Text.ToUpperInvariant() is "AND" or "OR" or "NOT" or "BETWEEN")
            {
                sb.Append(' ').Append(token.Text.ToUpperInvariant()).Append(' ');
                _position++;
            }
            else if (token.Kind == 'w' && token.Text.Equals("IN", StringComparison.OrdinalIgnoreCase))
            {
                _position++;
                var close = Accept("[") ? "]" : Accept("(") ? ")" : throw Malformed("IN takes a list");
                var items = new List<string> { Operand() };
                while (Accept(","))
                {
                    items.Add(Operand());
                }
                Expect(close);
                sb.Append(" IN (").Append(string.Join(", ", items)).Append(')');
            }
            else if (token.Kind == 'w' && _tokens[_position + 1] is { Kind: 'p', Text: "(" } && !IsKeyword(token.Text))
            {
                // A function: begins_with, contains, attribute_exists, attribute_not_exists, attribute_type, size.
                _position += 2;
                var arguments = new List<string> { Operand() };
                while (Accept(","))
                {
                    arguments.Add(Operand());
                }
                Expect(")");
                sb.Append(token.Text).Append('(').Append(string.Join(", ", arguments)).Append(')');
            }
            else if (token.Kind == 'p' && token.Text == "(")
            {
                depth++;
                sb.Append('(');
                _position++;
            }
            else if (token.Kind == 'p' && token.Text == ")")
            {
                depth--;
                sb.Append(')');
                _position++;
            }
            else if (token.Kind == 'p' && token.Text is "=" or "<>" or "!=" or "<" or "<=" or ">" or ">=")
            {
                sb.Append(' ').Append(token.Text == "!=" ? "<>" : token.Text).Append(' ');
                _position++;
            }
            else
            {
                var operand = Operand();
                if (AcceptWord("IS"))
                {
                    var negated = AcceptWord("NOT");
                    if (AcceptWord("MISSING"))
                    {
                        sb.Append(negated ? "attribute_exists(" : "attribute_not_exists(").Append(operand).Append(')');
                    }
                    else if (AcceptWord("NULL"))
                    {
                        sb.Append(negated ? "NOT " : "").Append("attribute_type(").Append(operand).Append(", ").Append(ValuePlaceholder(AttributeValue.FromString("NULL"))).Append(')');
                    }
                    else
                    {
                        throw Malformed("IS takes MISSING or NULL");
                    }
                    continue;
                }
                sb.Append(operand);
            }
        }
        return sb.ToString().Trim();
    }

    private string Operand()
    {
        if (Current.Kind is 'w' or 'q' && !(Current.Kind == 'w' && Current.Text.ToUpperInvariant() is "TRUE" or "FALSE" or "NULL"))
        {
            return Path();
        }
        return ValuePlaceholder(Literal());
    }

    /// <summary>A SET value: an operand, optionally + or - another, or a function of operands.</summary>
    private string SetValue()
    {
        string One()
        {
            if (Current.Kind == 'w' && _tokens[_position + 1] is { Kind: 'p', Text: "(" })
            {
                var name = _tokens[_position].Text;
                _position += 2;
                var arguments = new List<string> { SetValue() };
                while (Accept(","))
                {
                    arguments.Add(SetValue());
                }
                Expect(")");
                return $"{name}({string.Join(", ", arguments)})";
            }
            return Operand();
        }
        var left = One();
        if (Current.Kind == 'p' && Current.Text is "+" or "-")
        {
            var op = _tokens[_position++].Text;
            return $"{left} {op} {One()}";
        }
        return left;
    }

    /// <summary>A literal value (or a ? parameter): 'text', numbers, TRUE/FALSE, NULL, {maps}, [lists], &lt;&lt;sets&gt;&gt;.</summary>
    private AttributeValue Literal()
    {
        var token = _tokens[_position++];
        switch (token.Kind)
        {
            case '?':
                return _parameter < parameters.Count ? parameters[_parameter++] : throw DynamoException.Validation("Number of parameters in request and statement don't match.");
            case 's':
                return AttributeValue.FromString(token.Text);
            case 'n':
                return DynamoNumber.TryParse(token.Text, out var number, out var error) ? AttributeValue.FromNumber(number) : throw DynamoException.Validation(error!);
            case 'w' when token.Text.ToUpperInvariant() is "TRUE" or "FALSE":
                return AttributeValue.FromBool(token.Text.Equals("TRUE", StringComparison.OrdinalIgnoreCase));
            case 'w' when token.Text.Equals("NULL", StringComparison.OrdinalIgnoreCase):
                return AttributeValue.Null;
            case 'p' when token.Text == "{":
            {
                var map = new Item(StringComparer.Ordinal);
                if (!Accept("}"))
                {
                    do
                    {
                        var key = _tokens[_position++];
                        if (key.Kind is not ('s' or 'q'))
                        {
                            throw Malformed("map keys are quoted strings");
                        }
                        Expect(":");
                        map[key.Text] = Literal();
                    }
                    while (Accept(","));
                    Expect("}");
                }
                return AttributeValue.FromMap(map);
            }
            case 'p' when token.Text == "[":
            {
                var list = new List<AttributeValue>();
                if (!Accept("]"))
                {
                    do
                    {
                        list.Add(Literal());
                    }
                    while (Accept(","));
                    Expect("]");
                }
                return AttributeValue.FromList(list);
            }
            case 'p' when token.Text == "<<":
            {
                var members = new List<AttributeValue>();
                do
                {
                    members.Add(Literal());
                }
                while (Accept(","));
                Expect(">>");
                return members.All(static m => m.Kind == AttributeKind.S) ? AttributeValue.FromStringSet([.. members.Select(static m => m.S).Distinct(StringComparer.Ordinal)])
                    : members.All(static m => m.Kind == AttributeKind.N) ? AttributeValue.FromNumberSet([.. members.Select(static m => m.Number).Distinct()])
                    : members.All(static m => m.Kind == AttributeKind.B) ? AttributeValue.FromBinarySet([.. members.Select(static m => m.B)])
                    : throw Malformed("a set holds strings, numbers or binaries, all of one type");
            }
        }
        throw Malformed($"unexpected {token.Text}");
    }
}
